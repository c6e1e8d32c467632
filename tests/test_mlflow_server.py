"""A run logged to a real MLflow tracking server (started on localhost) instead of the SQLite default."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from marl_lightning.cli import MarlCLI
from tests.conftest import CONF, SMALL_RUN_ARGS

pytestmark = [pytest.mark.simulator, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tracking_server(in_tmp):
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{in_tmp / 'server.db'}",
            "--default-artifact-root",
            str(in_tmp / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("the MLflow tracking server did not start")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_fit_logs_to_a_tracking_server(tracking_server, in_tmp):
    MarlCLI(
        args=[
            "fit",
            "--config",
            str(CONF / "mappo.yaml"),
            *SMALL_RUN_ARGS,
            "--model.total_frames",
            "200",
            "--trainer.logger.init_args.tracking_uri",
            tracking_server,
            "--trainer.callbacks.init_args.dirpath",
            str(in_tmp / "ckpt"),
        ]
    )
    client = MlflowClient(tracking_server)
    experiment = client.get_experiment_by_name("mappo-navigation")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "mappo-navigation-seed0"
    assert run.data.metrics["train/frames"] == 200
    assert run.data.params["algorithm"] == "MAPPO"
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert not (in_tmp / "mlflow.db").exists()
