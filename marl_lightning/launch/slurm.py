"""SLURM pre-emption: the job requeued once the checkpoint its warning signal asked for is written.

``#SBATCH --signal=USR1@90`` makes SLURM send SIGUSR1 to every task 90 s before it stops the job.
Lightning's ``SLURMEnvironment`` (``auto_requeue``, ``requeue_signal`` SIGUSR1 by default) would write a
checkpoint from inside the signal handler, in the middle of an update; ``callbacks.IterationCheckpoint``
instead finishes the iteration in flight, checkpoints it on every rank's agreement, and then calls
:func:`requeue` on rank 0, which does what Lightning's handler does: ``scontrol requeue <job id>``. The
requeued job starts the same script again; with ``--ckpt_path last`` (once ``SLURM_RESTART_COUNT`` > 0,
see the README's sbatch example) it resumes into the same MLflow run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Trainer


def requeue_signal(trainer: Trainer) -> int | None:
    """The signal on which this job asks to be requeued: the ``SLURMEnvironment``'s ``requeue_signal`` when
    it has ``auto_requeue`` (Lightning's defaults: on, SIGUSR1); None when not under SLURM."""
    environment = getattr(trainer.strategy, "cluster_environment", None)  # (several processes)
    if isinstance(environment, SLURMEnvironment):
        return int(environment.requeue_signal) if environment.auto_requeue else None
    return int(signal.SIGUSR1) if SLURMEnvironment.detect() else None  # one process: Lightning's defaults


def job_id(environ: Mapping[str, str] = os.environ) -> str | None:
    """The id ``scontrol requeue`` takes: ``<array job>_<task>`` for an array task, else the job's."""
    array_job, array_task = environ.get("SLURM_ARRAY_JOB_ID"), environ.get("SLURM_ARRAY_TASK_ID")
    if array_job is not None and array_task is not None:
        return f"{array_job}_{array_task}"
    return environ.get("SLURM_JOB_ID")


def requeue(trainer: Trainer, signum: int) -> str | None:
    """On rank 0, requeue the job if ``signum`` is its requeue signal; what was done, for the stop message
    (None when nothing was to be done)."""
    if not trainer.is_global_zero or signum != requeue_signal(trainer):
        return None
    job = job_id()
    scontrol = shutil.which("scontrol")
    if job is None or scontrol is None:
        missing = "SLURM_JOB_ID is not set" if job is None else "scontrol is not on PATH"
        print(f"marl_lightning: not requeued: {missing}.", file=sys.stderr)
        return None
    result = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True, timeout=60)
    if result.returncode:
        print(f"marl_lightning: `scontrol requeue {job}` failed ({result.returncode}): "
              f"{(result.stderr or result.stdout).strip()}", file=sys.stderr)
        return None
    return f"SLURM job {job} requeued"
