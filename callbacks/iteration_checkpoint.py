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

from marl_lightning.core.errors import ConfigError, Interrupted, TrainingError
from marl_lightning.launch.slurm import requeue
from marl_lightning.safety.stop_signals import StopSignals
from marl_lightning.tracking.loggers import MLFLOW_RUN_KEY

LAST = "last.ckpt"
ARTIFACT_FOLDER = "checkpoints"  # the final checkpoint in the MLflow run: checkpoints/last.ckpt


class IterationCheckpoint(Checkpoint):
    """Writes ``<dirpath>/last.ckpt`` every ``every_n_iterations`` collected iterations and at the end.

    Without ``dirpath`` the CLI uses ``checkpoints/<experiment>/<run>``
    (``checkpoints/mappo-navigation/mappo-navigation-seed0``).

    An iteration is one collected batch, so a checkpoint never holds a half-done update. The file is
    written beside (``last.ckpt.partial``) at the end of the iteration, flushed to disk, and renamed over
    ``last.ckpt`` once Lightning has handed that iteration's metrics to the loggers (at the start of the
    next iteration, before anything of it runs, or at the end of the fit). So no interruption, ``kill -9``
    or power loss included, leaves a truncated ``last.ckpt``: it is always the newest complete checkpoint,
    and every iteration it holds is in the MLflow run (a kill between the write and the loggers leaves the
    previous checkpoint, and the resumed fit runs that iteration again). A write that fails (a full disk)
    stops the fit with a :class:`~marl_lightning.core.errors.TrainingError` and leaves the previous checkpoint
    as it was. As a Lightning ``Checkpoint`` it runs after every other callback of the iteration (β
    updates land in the file).

    Stop signals (SIGTERM, SIGINT, SIGUSR1; ``marl_lightning.safety.stop_signals``): once training has
    started, the iteration in flight is finished (and logged), a checkpoint written whatever
    ``every_n_iterations`` says, and the fit ends before the next iteration with
    :class:`~marl_lightning.core.errors.Interrupted` (the MLflow run KILLED, exit status 128 + the signal's
    number). A second signal stops at once. Under SLURM, its requeue signal (SIGUSR1, ``#SBATCH
    --signal=USR1@90``) also requeues the job once the checkpoint is in place
    (``marl_lightning.launch.slurm``).
    ``kill -9`` loses at most the iterations since the last checkpoint whose metrics were logged
    (``every_n_iterations``; at the default, the iteration in flight and, if the kill came while it was
    being logged, the one before).

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
        self.stopping: tuple[int, int] | None = None  # (signal, iteration): the fit ends before the next one
        self.written = False  # this process wrote last.ckpt.partial, not yet renamed into place

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
            self.stopping = (self.stop_signals.received or signal.SIGTERM, iterations)  # or another rank's

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Lightning hands an iteration's metrics to the loggers after every on_train_batch_end: here they
        # have them, and the checkpoint written then may become last.ckpt.
        self.commit(trainer)
        if self.stopping is None:
            return
        (signum, iterations), self.stopping = self.stopping, None
        requeued = requeue(trainer, signum)  # SLURM's pre-emption warning: the job is requeued
        self.stop_signals.restore()
        raise Interrupted(
            signum,
            f"{signal.Signals(signum).name}: stopped after iteration {iterations}, checkpoint "
            f"{os.path.join(self.dirpath or '.', LAST)}. "
            + (f"{requeued}: it resumes with --ckpt_path last." if requeued else
               "Resume with the same command and --ckpt_path last."),
        )

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.stop_signals.restore()
        self.commit(trainer)
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
        # After the epoch's last iteration was logged. Unless its state was written then, it is written now.
        if not self.written:
            self.save(trainer)
        self.commit(trainer)

    def save(self, trainer: Trainer) -> None:
        """Write the full training state to ``<dirpath>/last.ckpt.partial`` (rank 0 writes; every rank takes
        part); :meth:`commit` renames it over ``last.ckpt``."""
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.dirpath is None:
            return
        filepath = os.path.join(self.dirpath, LAST)
        partial = f"{filepath}.partial"  # a leftover from a killed write is overwritten
        try:
            trainer.save_checkpoint(partial, weights_only=False)
            if trainer.is_global_zero:
                _flush_to_disk(partial)
        except OSError as error:
            raise _write_failed(filepath, error) from error
        self.written = True
        trainer.strategy.barrier("IterationCheckpoint")

    def commit(self, trainer: Trainer) -> None:
        """Rename what :meth:`save` wrote over ``last.ckpt`` (rank 0; nothing if nothing is waiting)."""
        if not self.written:
            return
        self.written = False
        filepath = os.path.join(self.dirpath, LAST)
        if not trainer.is_global_zero:
            return
        try:
            os.replace(f"{filepath}.partial", filepath)
            _flush_to_disk(self.dirpath)  # the rename itself
        except OSError as error:
            raise _write_failed(filepath, error) from error

    @override
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Record the MLflow run, so that ``fit --ckpt_path`` goes on logging into it."""
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.run_id is not None:
                checkpoint[MLFLOW_RUN_KEY] = logger.run_id


def _write_failed(filepath: str, error: OSError) -> TrainingError:
    """The error that stops a fit whose checkpoint write failed (the partial file removed, the previous
    checkpoint kept)."""
    with contextlib.suppress(OSError):
        os.remove(f"{filepath}.partial")
    kept = (f"The previous checkpoint {filepath} is intact" if os.path.isfile(filepath)
            else "No earlier checkpoint exists")
    cause = "the disk is full" if error.errno == errno.ENOSPC else error.strerror or str(error)
    return TrainingError(
        f"Writing the checkpoint {filepath} failed: {cause} ({type(error).__name__}: {error}). {kept}. "
        "Free space (or give IterationCheckpoint another dirpath) and resume with --ckpt_path last."
    )


def _flush_to_disk(path: str) -> None:
    """fsync a file or a folder, so that a crash of the machine (not only of the process) keeps it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
