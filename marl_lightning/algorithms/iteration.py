"""What every algorithm shares: one Lightning batch is one iteration, counted against a frame budget."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from typing_extensions import override

from marl_lightning.algorithms import metrics
from marl_lightning.core.errors import ConfigError
from marl_lightning.data.seeding import derived_seed, restore_rng_states, rng_states, run_seed, seed_all
from marl_lightning.envs.base import EnvSpec


@dataclass
class Iteration:
    """What one iteration reports to the module that counts it.

    Attributes:
        frames: environment frames it consumed on all ranks together (collected steps, or oracle queries).
        statistics: named tensors, each declared in the module's ``statistics`` table.
        metrics: final values that need no reduction (exact figures an env computes), by metric name.
    """

    frames: int
    statistics: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def env_spec_of(env_spec: EnvSpec | dict | None, algorithm: str) -> EnvSpec:
    """The env's sizes, also from the dict a checkpoint's hparams hold."""
    if isinstance(env_spec, dict):
        return EnvSpec(**env_spec)
    if env_spec is None:
        raise ConfigError(
            f"{algorithm} needs env_spec, the sizes of the env: pass RolloutDataModule(...).env_spec "
            "(the CLI links it from the data module)."
        )
    return env_spec


class IterationModule(pl.LightningModule):
    """The owner of the frame and iteration counters, the budget and the stop rule.

    ``frames`` and ``iterations`` are buffers (checkpointed, broadcast from rank 0); the budget
    ``total_frames`` is a setting of this run, so a resumed fit may be given a larger one. It is kept out
    of the saved hyperparameters on purpose: with ``--ckpt_path`` LightningCLI puts a checkpoint's
    hyperparameters over the command line, which would restore the old budget; it is logged as the run
    parameter ``total_frames`` instead.

    Each ``training_step`` seeds every RNG from (seed, rank, iteration) — which makes a resumed fit draw
    what an uninterrupted one does — runs :meth:`run_iteration`, counts its frames, reduces and logs its
    statistics as the ``statistics`` table declares, stops the fit once the budget is spent and returns
    the reduced statistics to the callbacks. Subclasses implement :meth:`run_iteration` and call
    :meth:`save_hyperparameters_with` once.
    """

    statistics: ClassVar[Mapping[str, metrics.Statistic]] = metrics.ITERATION
    # Why the algorithm cannot run on several processes (None: it can; the CLI refuses before launching).
    single_process_reason: ClassVar[str | None] = None

    def __init__(self, total_frames: int) -> None:
        super().__init__()
        self.total_frames = int(total_frames)
        self.automatic_optimization = False
        self.register_buffer("frames", torch.zeros((), dtype=torch.long))
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))

    def save_hyperparameters_with(self, env_spec: EnvSpec) -> None:
        """Record the constructor's arguments plus the env's sizes as a plain dict (logged as run
        parameters; in checkpoints, loadable with ``weights_only``)."""
        self.save_hyperparameters(ignore=["env_spec", "total_frames"], frame=_caller_frame())
        self.save_hyperparameters({**self.hparams, "env_spec": dataclasses.asdict(env_spec)})

    @property
    def algorithm_label(self) -> str:
        """Name in MLflow experiment/run names and checkpoint folders (``mappo`` in ``mappo-navigation``)."""
        return type(self).__name__.lower()

    def run_iteration(self, dataloader_iter: Iterator) -> Iteration:
        """One iteration of the algorithm (the PPO update, a tabular step, ...)."""
        raise NotImplementedError

    def check_task(self, task: Any) -> None:
        """Refuse a task (an ``EnvFactory``) this algorithm cannot train on, with a ``ConfigError`` saying
        why. The CLI calls it before anything, the MLflow run included, is created (Lightning creates the
        run before ``setup``). Every task is accepted by default."""

    @override
    def on_fit_start(self) -> None:
        for logger in self.loggers:
            logger.log_hyperparams({"algorithm": type(self).__name__, "total_frames": self.total_frames})

    @override
    def on_train_start(self) -> None:
        if int(self.frames) >= self.total_frames:  # a resumed run whose budget is already spent
            self.trainer.should_stop = True

    @override
    def training_step(self, dataloader_iter: Iterator) -> dict[str, torch.Tensor]:
        # Taking the iterator (not a batch) stops Lightning from prefetching: the next iteration must be
        # collected by the policy this step produces, or the data would be off-policy.
        seed_all(derived_seed(run_seed(), self.global_rank, int(self.iterations)))
        iteration = self.run_iteration(dataloader_iter)
        self.frames += iteration.frames
        self.iterations += 1
        # on the module's device: NCCL reduces CUDA tensors only
        statistics = {name: value.to(self.device) for name, value in iteration.statistics.items()}
        reduced = metrics.reduce_over_ranks(statistics, self.statistics)
        frames = float(self.frames)
        self.log("step", frames, batch_size=1)  # the MLflow step: frames, not Lightning steps
        self.log("train/frames", frames, prog_bar=True, batch_size=1)
        self.log("train/iterations", float(self.iterations), batch_size=1)
        self.log_statistics(reduced)
        if iteration.metrics:
            self.log_dict(iteration.metrics, batch_size=1)
        if int(self.frames) >= self.total_frames:
            self.trainer.should_stop = True
        return reduced

    def log_statistics(
        self,
        reduced: Mapping[str, torch.Tensor],
        declared: Mapping[str, metrics.Statistic] | None = None,
        sync_dist: bool = False,
    ) -> None:
        """Log reduced statistics under the metric names ``declared`` (the module's table by default)."""
        values, prog_bar = metrics.metric_values(reduced, self.statistics if declared is None else declared)
        for name, value in values.items():
            self.log(name, value, prog_bar=name in prog_bar, batch_size=1, sync_dist=sync_dist)

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = rng_states()

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint.get("rng_states"):
            restore_rng_states(checkpoint["rng_states"])


def _caller_frame() -> Any:
    """The frame of the constructor that called :meth:`IterationModule.save_hyperparameters_with`."""
    return inspect.currentframe().f_back.f_back
