"""Evaluation of a policy on the data module's deterministic rollout: what ``validate``/``test`` log."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from marl_lightning.algorithms import metrics
from marl_lightning.algorithms.iteration import IterationModule
from marl_lightning.data.rollout import finished_episode_returns
from marl_lightning.launch.distributed import world_size


def log_evaluation(module: IterationModule, batch: TensorDictBase) -> None:
    """``eval/return_mean`` over the episodes of all ranks, ``eval/episodes``, and the env's own evaluation
    figures (``EnvFactory.evaluation_metrics``). Shapes: batch [episodes, T]."""
    returns = finished_episode_returns(batch, first_only=True)  # [episodes, A]
    values = {"return_mean": metrics.ratio(returns.sum(), returns.numel()),
              "episodes": torch.tensor(float(returns.shape[0]), device=returns.device)}
    reduced = metrics.reduce_over_ranks(values, metrics.EVALUATION)
    total, count = reduced["return_mean"].tolist()
    if count == 0:
        raise RuntimeError("evaluation finished no episode: the env has no max_steps and never ended one.")
    # Already reduced over ranks; sync_dist (a mean of equal values) only keeps Lightning quiet.
    sync = world_size() > 1
    module.log("step", float(module.frames), batch_size=1, sync_dist=sync)
    module.log_statistics(reduced, metrics.EVALUATION, sync_dist=sync)
    env_factory = module.trainer.datamodule.env_factory
    for name, value in env_factory.evaluation_metrics(module.policy, total / count).items():
        module.log(name, value, batch_size=1, sync_dist=sync)
