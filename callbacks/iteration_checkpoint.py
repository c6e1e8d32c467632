"""Checkpoint at iteration boundaries: the full state (networks, optimiser, counters, buffers, RNG)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers import MLFlowLogger
from typing_extensions import override

from marl_lightning.errors import ConfigError, Interrupted, TrainingError
from marl_lightning.loggers import MLFLOW_RUN_KEY
from marl_lightning.slurm import requeue
from marl_lightning.stop_signals import StopSignals

LAST = "last.ckpt"
ARTIFACT_FOLDER = "checkpoints"  # the final checkpoint in the MLflow run: checkpoints/last.ckpt


class IterationCheckpoint(Checkpoint):
    """Writes ``<dirpath>/last.ckpt`` every ``every_n_iterations`` collected iterations and at the end.

    Without ``dirpath`` the CLI uses ``checkpoints/<experiment>/<run>``
    (``checkpoints/mappo-navigation/mappo-navigation-seed0``).

    An iteration is one collected batch, so a checkpoint never holds a half-done update. The file is
    written beside (``last.ckpt.partial``), flushed to disk and then renamed over ``last.ckpt``, so no
    interruption, ``kill -9`` or power loss included, leaves a truncated ``last.ckpt``: it is always the
    newest complete checkpoint. A write that fails (a full disk) stops the fit with a
    :class:`~marl_lightning.errors.TrainingError` and leaves the previous checkpoint as it was. As a
    Lightning ``Checkpoint`` it runs after every other callback of the iteration (β updates land in the
    file).

    Stop signals (SIGTERM, SIGINT, SIGUSR1; ``marl_lightning.stop_signals``): once training has started,
    the iteration in flight is finished (and logged), a checkpoint written whatever
    ``every_n_iterations`` says, and the fit ends before the next iteration with
    :class:`~marl_lightning.errors.Interrupted` (the MLflow run KILLED, exit status 128 + the signal's
    number). A second signal stops at once. Under SLURM, its requeue signal (SIGUSR1, ``#SBATCH
    --signal=USR1@90``) also requeues the job once the checkpoint is written (``marl_lightning.slurm``).
    ``kill -9`` loses at most the iterations since the last checkpoint (``every_n_iterations``; at the
    default, the iteration in flight).

    With ``log_to_mlflow`` (the default) the checkpoint written at the end of the fit is also logged to the
    MLflow run as the artifact ``checkpoints/last.ckpt``, so ``test --ckpt_path runs:/<run_id>/checkpoints/
    last.ckpt`` evaluates it from the tracking store alone.
    """

    def __init__(
        self, dirpath: str | None = None, every_n_iterations: int = 1, log_to_mlflow: bool = True
    ) -> None:
        if every_n_iterations < 1:
            raise ConfigError(
                f"IterationCheckpoint.every_n_iterations must be >= 1, got {every_n_iterations}."
            )
        self.dirpath = dirpath
        self.every_n_iterations = every_n_iterations
        self.log_to_mlflow = log_to_mlflow
        self.stop_signals = StopSignals()
        self.stopping: Interrupted | None = None  # raised before the next iteration starts

    def last_path(self) -> str | None:
        """The last checkpoint this callback wrote (in an earlier or this process), if there is one."""
        if self.dirpath is None:
            return None
        path = Path(self.dirpath) / LAST
        return str(path) if path.is_file() else None

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.stop_signals.install()

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        iterations = int(getattr(pl_module, "iterations", trainer.global_step))
        # Every rank stops if any rank received a signal (a scheduler may signal one process only).
        stop = trainer.strategy.reduce_boolean_decision(self.stop_signals.received is not None, all=False)
        if iterations % self.every_n_iterations == 0 or trainer.should_stop or stop:
            self.save(trainer)
        if stop and not trainer.should_stop:  # (the last iteration just ends the fit)
            signum = self.stop_signals.received or signal.SIGTERM  # another rank's signal
            requeued = requeue(trainer, signum)  # SLURM's pre-emption warning: the job is requeued
            self.stopping = Interrupted(
                signum,
                f"{signal.Signals(signum).name}: stopped after iteration {iterations}, checkpoint "
                f"{os.path.join(self.dirpath or '.', LAST)}. "
                + (f"{requeued}: it resumes with --ckpt_path last." if requeued else
                   "Resume with the same command and --ckpt_path last."),
            )

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Raised here, not at the end of the iteration it follows: Lightning hands that iteration's metrics
        # to the loggers after every on_train_batch_end.
        if self.stopping is not None:
            stopping, self.stopping = self.stopping, None
            self.stop_signals.restore()
            raise stopping

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.stop_signals.restore()
        path = self.last_path()
        if not (self.log_to_mlflow and trainer.is_global_zero and path):
            return
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
                logger.experiment.log_artifact(logger.run_id, path, ARTIFACT_FOLDER)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.stop_signals.restore()
        path = self.last_path()
        if isinstance(exception, TrainingError) and path is not None and path not in str(exception):
            exception.add_note(f"The last good checkpoint is {path} (kept); resume with --ckpt_path last.")

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.save(trainer)

    def save(self, trainer: Trainer) -> None:
        """Write the full training state to ``<dirpath>/last.ckpt`` (rank 0 writes; every rank takes part)."""
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.dirpath is None:
            return
        filepath = os.path.join(self.dirpath, LAST)
        partial = f"{filepath}.partial"  # a leftover from a killed write is overwritten
        try:
            trainer.save_checkpoint(partial, weights_only=False)
            if trainer.is_global_zero:
                _flush_to_disk(partial)
                os.replace(partial, filepath)
                _flush_to_disk(self.dirpath)  # the rename itself
        except OSError as error:
            with contextlib.suppress(OSError):
                os.remove(partial)
            kept = (f"The previous checkpoint {filepath} is intact" if os.path.isfile(filepath)
                    else "No earlier checkpoint exists")
            cause = "the disk is full" if error.errno == errno.ENOSPC else error.strerror or str(error)
            raise TrainingError(
                f"Writing the checkpoint {filepath} failed: {cause} ({type(error).__name__}: {error}). "
                f"{kept}. Free space (or give IterationCheckpoint another dirpath) and resume "
                "with --ckpt_path last."
            ) from error
        trainer.strategy.barrier("IterationCheckpoint")

    @override
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Record the MLflow run, so that ``fit --ckpt_path`` goes on logging into it."""
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
                checkpoint[MLFLOW_RUN_KEY] = logger.run_id


def _flush_to_disk(path: str) -> None:
    """fsync a file or a folder, so that a crash of the machine (not only of the process) keeps it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
