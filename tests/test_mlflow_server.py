"""A real MLflow tracking server (started on localhost, proxied artifacts): a fit logs to it; a grid runs
against it; a policy is evaluated from its artifacts alone; ``compare`` reads it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from marl_lightning.__main__ import cli_main
from marl_lightning.cli import MarlCLI
from tests.conftest import CONF, SMALL_RUN_ARGS
from tests.test_grid import write_grid
from tests.tracking_server import TrackingServer

pytestmark = [pytest.mark.simulator, pytest.mark.slow]


@pytest.fixture
def tracking_server(in_tmp):
    server = TrackingServer(in_tmp)
    server.start()
    yield server.url
    server.stop()


def _marl(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "marl_lightning", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def test_fit_grid_evaluation_from_artifacts_and_compare_against_a_server(tracking_server, in_tmp, capsys):
    """One server for the whole workflow: a fit logs to it; a grid runs against it; a policy is evaluated
    from its artifacts alone; ``compare`` reads it."""
    MarlCLI(
        args=[
            "fit", "--config", str(CONF / "mappo.yaml"), *SMALL_RUN_ARGS, "--model.total_frames", "200",
            "--trainer.logger.init_args.tracking_uri", tracking_server,
            "--trainer.callbacks.init_args.dirpath", str(in_tmp / "ckpt"),
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

    write_grid(in_tmp, name="served")
    result = _marl("grid", "--config", "served.yaml", "--tracking_uri", tracking_server, "--jobs", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 finished" in result.stdout
    assert not (in_tmp / "mlflow.db").exists()  # nothing went to the default store
    client = MlflowClient(tracking_server)
    experiment = client.get_experiment_by_name("served")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    run = runs["ippo-ratio_game-seed1"]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied by the server

    # The policy from the server alone: its config and final checkpoint, no local checkpoint folder.
    import shutil

    shutil.rmtree(in_tmp / "checkpoints")
    run_uri = f"runs:/{run.info.run_id}"
    cli_main([
        "test",
        "--config",
        f"{run_uri}/config.yaml",
        "--ckpt_path",
        f"{run_uri}/checkpoints/last.ckpt",
        "--trainer.logger.init_args.tracking_uri",
        tracking_server,
        "--trainer.logger.init_args.run_name",
        "evaluated-from-server",
    ])
    (evaluated,) = client.search_runs(
        [experiment.experiment_id], "attributes.run_name = 'evaluated-from-server'"
    )
    # The exact value of the trained policy equals the one the fit logged at its last evaluation.
    value = evaluated.data.metrics["eval/ratio_game_value"]
    assert value == pytest.approx(run.data.metrics["eval/ratio_game_value"], abs=1e-6)

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli_main(["compare", "--grid", "served", "--tracking-uri", tracking_server, "--reps", "100"])
    out = capsys.readouterr()
    assert exit_.value.code == 0, out.out + out.err
    assert "mappo" in out.out and "ippo" in out.out
    (summary,) = client.search_runs([experiment.experiment_id], "tags.`grid.role` = 'summary'")
    artifacts = {a.path for a in client.list_artifacts(summary.info.run_id, "comparison")}
    assert {"comparison/summary.md", "comparison/marl_eval.json"} <= artifacts
