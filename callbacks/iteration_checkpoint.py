"""Checkpoint at iteration boundaries: the full state (networks, optimiser, counters, buffers, RNG)."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from typing_extensions import override

from marl_lightning.loggers import MLFLOW_RUN_KEY


class IterationCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` every ``every_n_iterations`` collected iterations and at the end.

    Without ``dirpath`` the CLI uses ``checkpoints/<algorithm>-<task>`` (``checkpoints/mappo-navigation``).

    An iteration is one collected batch, so a checkpoint never holds a half-done update; an interrupted
    run loses at most the iteration in flight plus ``every_n_iterations - 1``. Files are replaced
    atomically. ``fit --ckpt_path last`` resumes from it, logging into the same MLflow run (its id is in the
    checkpoint under ``"mlflow_run_id"``).
    """

    def __init__(self, dirpath: str | None = None, every_n_iterations: int = 1) -> None:
        if every_n_iterations < 1:
            raise ValueError(
                f"IterationCheckpoint.every_n_iterations must be >= 1, got {every_n_iterations}."
            )
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0, save_on_train_epoch_end=True)
        self.every_n_iterations = every_n_iterations

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        iterations = int(getattr(pl_module, "iterations", trainer.global_step))
        if iterations % self.every_n_iterations == 0 or trainer.should_stop:
            self._save_last(trainer)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save_last(trainer)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Evaluation does not change the training state: nothing to save."""

    @override
    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        """Write to a side file, then rename: an interruption never leaves a half-written checkpoint."""
        partial = f"{filepath}.partial"
        super()._save_checkpoint(trainer, partial)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        trainer.strategy.barrier("IterationCheckpoint")
        self._last_checkpoint_saved = filepath

    @override
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Record the MLflow run, so that ``fit --ckpt_path`` goes on logging into it."""
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
                checkpoint[MLFLOW_RUN_KEY] = logger.run_id

    def _save_last(self, trainer: Trainer) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
