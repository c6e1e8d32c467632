"""An interrupted fit (Ctrl-C) resumes from its last checkpoint and ends where an uninterrupted one does."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import cli_command

pytestmark = [pytest.mark.simulator, pytest.mark.slow]
TOTAL = 20 * 200  # 20 iterations


def _command(dirpath: Path, *extra: str) -> list[str]:
    return cli_command(
        "fit",
        "--trainer.logger",
        "false",
        "--model.total_frames",
        str(TOTAL),
        "--trainer.callbacks.init_args.dirpath",
        str(dirpath),
        *extra,
    )


def _iterations(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["state_dict"]["iterations"])


def test_interrupted_fit_resumes_to_the_same_parameters(in_tmp):
    straight = in_tmp / "straight"
    subprocess.run(_command(straight), check=True, capture_output=True, cwd=in_tmp, timeout=600)

    interrupted = in_tmp / "interrupted"
    proc = subprocess.Popen(
        _command(interrupted), cwd=in_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = interrupted / "last.ckpt"
    deadline = time.monotonic() + 300
    while not (last.exists() and _iterations(last) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it was interrupted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    done_before_resume = _iterations(last)
    assert done_before_resume < 20, "the interruption came too late to test anything"
    assert not list(interrupted.glob("*.partial"))

    subprocess.run(
        _command(interrupted, "--ckpt_path", "last"), check=True, capture_output=True, cwd=in_tmp, timeout=600
    )
    a = torch.load(straight / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    assert int(b["iterations"]) == 20
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_ctrl_c_marks_the_mlflow_run_killed_and_the_resumed_fit_finishes_it(in_tmp):
    from mlflow.tracking import MlflowClient

    command = cli_command("fit", "--model.total_frames", str(TOTAL))
    proc = subprocess.Popen(command, cwd=in_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = in_tmp / "checkpoints" / "mappo-navigation" / "mappo-navigation-seed0" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not (last.exists() and _iterations(last) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it was interrupted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) != 0
    client = MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mappo-navigation").experiment_id])
    assert run.info.status == "KILLED"  # not FAILED: nothing went wrong
    assert run.data.tags["stage"] == "fit"

    subprocess.run(
        [*command, "--ckpt_path", "last"], check=True, capture_output=True, cwd=in_tmp, timeout=600
    )
    (resumed,) = client.search_runs([client.get_experiment_by_name("mappo-navigation").experiment_id])
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.metrics["train/frames"] == TOTAL
