"""Checkpoint at iteration boundaries: the full state (networks, optimiser, counters, buffers, RNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers import MLFlowLogger
from typing_extensions import override

from marl_lightning.loggers import MLFLOW_RUN_KEY

LAST = "last.ckpt"
ARTIFACT_FOLDER = "checkpoints"  # the final checkpoint in the MLflow run: checkpoints/last.ckpt


class IterationCheckpoint(Checkpoint):
    """Writes ``<dirpath>/last.ckpt`` every ``every_n_iterations`` collected iterations and at the end.

    Without ``dirpath`` the CLI uses ``checkpoints/<experiment>/<run>``
    (``checkpoints/mappo-navigation/mappo-navigation-seed0``).

    An iteration is one collected batch, so a checkpoint never holds a half-done update; an interrupted
    run loses at most the iteration in flight plus ``every_n_iterations - 1``. The file is written beside
    and then renamed, so an interruption never leaves a half-written checkpoint. As a Lightning
    ``Checkpoint`` it runs after every other callback of the iteration (β updates land in the file).
    ``fit --ckpt_path last`` resumes from :meth:`last_path`, logging into the same MLflow run (its id is in
    the checkpoint under ``"mlflow_run_id"``). Only Lightning's public API is used.

    With ``log_to_mlflow`` (the default) the checkpoint written at the end of the fit is also logged to the
    MLflow run as the artifact ``checkpoints/last.ckpt``, so ``test --ckpt_path runs:/<run_id>/checkpoints/
    last.ckpt`` evaluates it from the tracking store alone.
    """

    def __init__(
        self, dirpath: str | None = None, every_n_iterations: int = 1, log_to_mlflow: bool = True
    ) -> None:
        if every_n_iterations < 1:
            raise ValueError(
                f"IterationCheckpoint.every_n_iterations must be >= 1, got {every_n_iterations}."
            )
        self.dirpath = dirpath
        self.every_n_iterations = every_n_iterations
        self.log_to_mlflow = log_to_mlflow

    def last_path(self) -> str | None:
        """The last checkpoint this callback wrote (in an earlier or this process), if there is one."""
        if self.dirpath is None:
            return None
        path = Path(self.dirpath) / LAST
        return str(path) if path.is_file() else None

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        iterations = int(getattr(pl_module, "iterations", trainer.global_step))
        if iterations % self.every_n_iterations == 0 or trainer.should_stop:
            self.save(trainer)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.save(trainer)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        path = self.last_path()
        if not (self.log_to_mlflow and trainer.is_global_zero and path):
            return
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
                logger.experiment.log_artifact(logger.run_id, path, ARTIFACT_FOLDER)

    def save(self, trainer: Trainer) -> None:
        """Write the full training state to ``<dirpath>/last.ckpt`` (rank 0 writes; every rank takes part)."""
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.dirpath is None:
            return
        filepath = os.path.join(self.dirpath, LAST)
        partial = f"{filepath}.partial"
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        trainer.strategy.barrier("IterationCheckpoint")

    @override
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Record the MLflow run, so that ``fit --ckpt_path`` goes on logging into it."""
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
                checkpoint[MLFLOW_RUN_KEY] = logger.run_id
