"""A fit stopped by SIGTERM, SIGINT or SIGUSR1 ends KILLED after a consistent checkpoint, with a non-zero
exit; after SIGTERM or kill -9 (at the worst moment: an iteration checkpointed, its metrics not yet logged)
it resumes into the same MLflow run and ends where an uninterrupted one does, bit for bit, every iteration
logged; checkpoints are never left half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import checkpoint_iterations, cli_args, cli_command

pytestmark = [pytest.mark.simulator, pytest.mark.slow]
ITERATIONS = 12
TOTAL = ITERATIONS * 200
EXPERIMENT = "mappo-navigation"
CHECKPOINT = Path("checkpoints") / EXPERIMENT / f"{EXPERIMENT}-seed0" / "last.ckpt"
COMMAND = cli_command("fit", "--model.total_frames", str(TOTAL))
KILLED_WHILE_LOGGING = 3  # the iteration whose metrics the loggers were being handed at the kill -9
# The same fit, killed -9 when the loggers are handed KILL_AT_STEP's metrics: after the iteration's
# checkpoint callback ran, before MLflow has its metrics.
KILLING = """
import os, signal, sys
from lightning.pytorch.loggers import MLFlowLogger
from marl_lightning.__main__ import cli_main
log_metrics = MLFlowLogger.log_metrics
def kill_at(self, metrics, step=None):
    if step is not None and int(step) == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
    log_metrics(self, metrics, step)
MLFlowLogger.log_metrics = kill_at
cli_main(sys.argv[1:])
"""


def _only_run(folder: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    return client, run


def _curve(client, run_id: str) -> list[tuple[float, float]]:
    """train/return_mean at every iteration: (frames, value)."""
    history = client.get_metric_history(run_id, "train/return_mean")
    return sorted((m.step, m.value) for m in history)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, repo_on_path) -> tuple[dict, list]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(COMMAND, check=True, capture_output=True, cwd=folder, timeout=600)
    client, run = _only_run(folder)
    state = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)["state_dict"]
    return state, _curve(client, run.info.run_id)


@pytest.fixture(scope="module")
def repo_on_path():
    import os

    from tests.conftest import REPO

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        yield


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_a_signalled_fit_resumes_into_the_same_run_and_ends_bit_for_bit(signum, uninterrupted, in_tmp):
    state, curve = uninterrupted
    last = in_tmp / CHECKPOINT
    if signum == signal.SIGKILL:
        killing = [sys.executable, "-c", KILLING, *cli_args("fit", "--model.total_frames", str(TOTAL))]
        proc = subprocess.run(killing, cwd=in_tmp, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "KILL_AT_STEP": str(200 * KILLED_WHILE_LOGGING)})
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        # The checkpoint of the iteration whose metrics were lost was never put in place: it runs again.
        assert checkpoint_iterations(last) == KILLED_WHILE_LOGGING - 1
        client, run = _only_run(in_tmp)
        assert run.info.status == "RUNNING"  # nobody could close it
        assert len(_curve(client, run.info.run_id)) == KILLED_WHILE_LOGGING - 1
        # What a kill during the next write would leave: a truncated file beside the complete checkpoint.
        last.with_name("last.ckpt.partial").write_bytes(b"PK\x03\x04 truncated")
    else:
        proc = subprocess.Popen(COMMAND, cwd=in_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 300
        # Signalled once iteration 2 is checkpointed.
        while not (last.exists() and checkpoint_iterations(last) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, "it ended before it was signalled"
            time.sleep(0.05)
        seen = checkpoint_iterations(last)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=300)
        stopped_at = checkpoint_iterations(last)
        assert stopped_at < ITERATIONS, "the signal came too late to test anything"
        client, run = _only_run(in_tmp)
        assert proc.returncode == 128 + signum, stderr[-3000:]
        assert "Traceback" not in stderr
        assert stopped_at > seen  # the iteration in flight was finished and checkpointed
        assert f"{signal.Signals(signum).name}: stopped after iteration {stopped_at}" in stderr
        assert run.info.status == "KILLED"
        assert run.data.metrics["train/iterations"] == stopped_at  # every finished iteration logged
    logged = _curve(client, run.info.run_id)
    assert logged == curve[: len(logged)]
    if signum in (signal.SIGINT, signal.SIGUSR1):
        return  # they stop exactly as SIGTERM does, whose resume is tested (each resume is two fits' time)

    resumed = subprocess.run([*COMMAND, "--ckpt_path", "last"], capture_output=True, text=True, cwd=in_tmp,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    client, finished = _only_run(in_tmp)
    assert finished.info.run_id == run.info.run_id and finished.info.status == "FINISHED"
    logged = _curve(client, finished.info.run_id)
    assert logged == curve  # the same curve, every iteration once
    assert not last.with_name("last.ckpt.partial").exists()
    final = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    assert int(final["iterations"]) == ITERATIONS
    for name in state:
        torch.testing.assert_close(final[name], state[name], rtol=0, atol=0, msg=name)
