"""SLURM pre-emption: SIGUSR1 (``#SBATCH --signal=USR1@90``) checkpoints at the iteration boundary, requeues
the job with ``scontrol requeue``, and the requeued job resumes into the same MLflow run.

There is no SLURM here: the job is the environment SLURM gives its tasks (Lightning's ``SLURMEnvironment``
detects it from ``SLURM_NTASKS`` and ``SLURM_JOB_NAME``) and ``scontrol`` a script on ``PATH`` that records
what it was asked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from marl_lightning.launch.slurm import job_id
from tests.conftest import checkpoint_iterations, cli_command, only_run

CHECKPOINT = Path("checkpoints") / "mappo-navigation" / "mappo-navigation-seed0" / "last.ckpt"
TOTAL = 12 * 200


def test_an_array_task_is_requeued_by_its_array_id():
    array_task = {"SLURM_JOB_ID": "4243", "SLURM_ARRAY_JOB_ID": "4200", "SLURM_ARRAY_TASK_ID": "3"}
    assert job_id(array_task) == "4200_3"
    assert job_id({"SLURM_JOB_ID": "4242"}) == "4242"
    assert job_id({}) is None


@pytest.mark.simulator
def test_the_preemption_signal_checkpoints_requeues_and_the_requeued_job_resumes(in_tmp):
    calls = in_tmp / "scontrol_calls"
    bin_folder = in_tmp / "bin"
    bin_folder.mkdir()
    scontrol = bin_folder / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_folder}{os.pathsep}{os.environ['PATH']}", "SLURM_NTASKS": "1",
           "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
           "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}
    proc = subprocess.Popen(cli_command("fit", "--model.total_frames", str(TOTAL)), cwd=in_tmp, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = in_tmp / CHECKPOINT
    deadline = time.monotonic() + 300
    while not (last.exists() and checkpoint_iterations(last) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it was signalled"
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGUSR1, stderr[-3000:]
    stopped_at = checkpoint_iterations(last)
    assert 2 <= stopped_at < 12
    assert calls.read_text().split("\n")[:-1] == ["requeue 4242"]  # once, by rank 0, after the checkpoint
    assert "SLURM job 4242 requeued: it resumes with --ckpt_path last" in stderr

    # The requeued job: the same command with --ckpt_path last (the sbatch example adds it on a restart).
    resumed = subprocess.run(cli_command("fit", "--model.total_frames", str(TOTAL), "--ckpt_path", "last"),
                             cwd=in_tmp, env={**env, "SLURM_RESTART_COUNT": "1"}, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint_iterations(last) == 12
    client, run = only_run(in_tmp / "mlflow.db")
    assert run.info.status == "FINISHED"
    frames = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/frames"))
    assert frames == [200 * i for i in range(1, 13)]  # one run, every iteration once
    assert calls.read_text().split("\n")[:-1] == ["requeue 4242"]  # the finished job is not requeued
