"""RolloutDataModule: a TorchRL collector is the training dataloader; one batch = one iteration."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import lightning.pytorch as pl
import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.data.seeding import derived_seed, run_seed, seed_all
from marl_lightning.data.team_signals import expand_team_signals
from marl_lightning.envs.base import EnvFactory, EnvSpec
from marl_lightning.envs.vmas import Vmas

_EVAL_RANK_OFFSET = 10_000


@dataclass
class Rollout:
    """One collected iteration and how long collecting it took (what the training dataloader yields).

    Shapes: batch [num_envs, T] in the batch layout.
    """

    batch: TensorDictBase
    collect_s: float


class RolloutDataModule(pl.LightningDataModule):
    r"""Builds the env of each rank and a TorchRL collector around the module's policy.

    ``train_dataloader()`` yields :class:`Rollout`\ s, one collected iteration ``[num_envs, T, ...]`` per
    Lightning batch, for as long as it is asked: the budget and the counters belong to the algorithm
    module, which stops the fit. Every iteration starts from freshly reset envs; the env's own generator is
    reseeded before each rollout from the global seed the module set for that iteration
    (``torch.initial_seed()``), so a resumed fit draws what an uninterrupted one does. Choose
    ``frames_per_batch`` as a multiple of ``num_envs × max_steps`` so no episode is cut.

    ``val_dataloader()``/``test_dataloader()`` yield one deterministic rollout of ``eval_episodes``
    episodes.

    Args:
        env: the task (a :class:`~marl_lightning.envs.EnvFactory`, e.g. ``Vmas``).
        num_envs: vectorised envs per rank.
        frames_per_batch: frames collected per iteration, on each rank.
        eval_episodes: episodes of one evaluation.
    """

    def __init__(
        self,
        env: EnvFactory | None = None,
        num_envs: int = 60,
        frames_per_batch: int = 6000,
        eval_episodes: int = 10,
    ) -> None:
        super().__init__()
        env = env if env is not None else Vmas()
        if num_envs < 1:
            raise ConfigError(f"data.num_envs must be >= 1, got {num_envs}. Use e.g. --data.num_envs 60.")
        if frames_per_batch < 1 or frames_per_batch % num_envs:
            raise ConfigError(
                f"data.frames_per_batch ({frames_per_batch}) must be a positive multiple of "
                f"data.num_envs ({num_envs}): each env steps frames_per_batch / num_envs times per "
                f"iteration. Use e.g. --data.frames_per_batch {num_envs * 100}."
            )
        if eval_episodes < 1:
            raise ConfigError(f"data.eval_episodes must be >= 1, got {eval_episodes}.")
        self.save_hyperparameters(ignore=["env"])
        self.save_hyperparameters({**self.hparams, "env": {"class": type(env).__name__, **env.hparams()}})
        self.env_factory = env
        self.num_envs = num_envs
        self.frames_per_batch = frames_per_batch
        self.eval_episodes = eval_episodes
        self.env_spec: EnvSpec = env.spec()
        self.collector: Collector | None = None  # while a training stream runs
        self._eval_env: EnvBase | None = None

    @property
    def steps_per_env(self) -> int:
        """T, the steps each env takes in one iteration."""
        return self.frames_per_batch // self.num_envs

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def _policy_and_device(self) -> tuple[torch.nn.Module, torch.device]:
        module = self.trainer.lightning_module
        return module.policy, module.device

    def train_dataloader(self) -> _RolloutStream:
        return _RolloutStream(self)

    def val_dataloader(self) -> _EvalStream:
        return _EvalStream(self)

    def test_dataloader(self) -> _EvalStream:
        return _EvalStream(self)

    def make_collector(self) -> Collector:
        """This rank's env (seeded from (seed, rank)) and a collector acting with the module's policy."""
        policy, device = self._policy_and_device()
        seed = derived_seed(run_seed(), self._rank(), -1)
        env = self.env_factory.make_transformed(self.num_envs, device, seed)
        return Collector(
            env,
            policy,
            frames_per_batch=self.frames_per_batch,
            total_frames=-1,
            device=device,
            reset_at_each_iter=True,
            postproc=partial(expand_team_signals, n_agents=self.env_spec.n_agents),
            trust_policy=True,
            auto_register_policy_transforms=False,
        )

    def evaluation_rollout(self) -> TensorDictBase:
        """``eval_episodes`` episodes with the deterministic policy (mode/mean action), reproducibly seeded.

        Shapes:
            returns a TensorDict [eval_episodes, max_steps] in the batch layout.
        """
        policy, device = self._policy_and_device()
        max_steps = self.env_factory.max_steps or 1000
        seed = derived_seed(run_seed(), self._rank() + _EVAL_RANK_OFFSET, 0)
        if self._eval_env is None or self._eval_env.device != device:
            self._eval_env = self.env_factory.make_transformed(self.eval_episodes, device, seed)
        with (
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
            set_exploration_type(ExplorationType.DETERMINISTIC),
            torch.no_grad(),
        ):
            seed_all(seed)
            self._eval_env.set_seed(seed)
            rollout = self._eval_env.rollout(max_steps, policy, break_when_any_done=False)
        return expand_team_signals(rollout, self.env_spec.n_agents)

    def teardown(self, stage: str) -> None:
        if self._eval_env is not None:
            self._eval_env.close()
            self._eval_env = None


class _RolloutStream:
    """Iterable handed to Lightning as the training dataloader: endless, the module stops the fit."""

    def __init__(self, datamodule: RolloutDataModule) -> None:
        self.datamodule = datamodule

    def __iter__(self) -> Iterator[Rollout]:
        return _rollouts(self.datamodule)


def _rollouts(datamodule: RolloutDataModule) -> Iterator[Rollout]:
    # Built at the first request (an algorithm that never asks, the tabular one, needs no env). Building the
    # env may reseed the global RNGs (VMAS does): the seed the module set for this iteration is restored.
    seed = torch.initial_seed()
    collector = datamodule.collector = datamodule.make_collector()
    seed_all(seed)
    try:
        batches = iter(collector)
        while True:
            # The env keeps a private generator (VMAS); each rollout begins with a reset, seeded here from
            # the global seed the module set for this iteration.
            collector.env.set_seed(torch.initial_seed())
            start = time.perf_counter()
            batch = next(batches)
            yield Rollout(batch, time.perf_counter() - start)
    finally:
        collector.shutdown()
        datamodule.collector = None


class _EvalStream:
    """Iterable of one evaluation rollout."""

    def __init__(self, datamodule: RolloutDataModule) -> None:
        self.datamodule = datamodule

    def __iter__(self) -> Iterator[TensorDictBase]:
        yield self.datamodule.evaluation_rollout()

    def __len__(self) -> int:
        return 1


def finished_episode_returns(batch: TensorDictBase, first_only: bool = False) -> torch.Tensor:
    """Each agent's undiscounted return of every episode that ended in the batch.

    Shapes:
        batch [B, T] -> returns [n_finished, A].
    """
    done = batch.get(keys.nxt(keys.ROOT_DONE)).squeeze(-1)  # [B, T]
    if first_only:
        done = done & (done.long().cumsum(-1) == 1)
    episode_reward = batch.get(keys.nxt(keys.EPISODE_REWARD)).squeeze(-1)  # [B, T, A]
    return episode_reward[done]
