"""A tracking server with basic authentication (``mlflow server --app-name basic-auth``): credentials come
from MLflow's environment variables only; a wrong password is refused with one clear paragraph before
anything is created; the right one logs the run, and the password is nowhere in what the fit wrote."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from marl_lightning.__main__ import cli_main
from tests.conftest import cli_args
from tests.tracking_server import TrackingServer

pytestmark = [pytest.mark.simulator, pytest.mark.slow]
PASSWORD = "Correct-Horse-Battery-5731"  # the admin's, set when the auth app first starts
EXPERIMENT = "mappo-navigation"


@pytest.fixture
def auth_server(in_tmp):
    env = {"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-test-only-key"}
    server = TrackingServer(in_tmp, app_name="basic-auth", env=env)
    server.start()
    yield server
    server.stop()


def _fit(url: str) -> int:
    """The exit status of ``fit`` run in this process (a finished fit returns; an error exits)."""
    try:
        cli_main(cli_args("fit", "--model.total_frames", "200",
                          "--trainer.logger.init_args.tracking_uri", url))
    except SystemExit as ended:
        return ended.code or 0
    return 0


def _texts_of_run(client: MlflowClient, run) -> list[str]:
    texts = [*run.data.params.values(), *run.data.tags.values(), *run.data.params, *run.data.tags]
    local = client.download_artifacts(run.info.run_id, "config.yaml")
    with open(local) as file:
        texts.append(file.read())
    return texts


def test_credentials_come_from_the_environment_and_are_written_nowhere(
    auth_server, in_tmp, monkeypatch, capfd
):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    assert _fit(auth_server.url) == 2
    refused = capfd.readouterr()
    assert "asks for credentials (HTTP 401)" in refused.err and "'admin'" in refused.err
    assert "Traceback" not in refused.err and "not-the-password" not in refused.err + refused.out
    assert not (in_tmp / "checkpoints").exists()  # refused before anything was created

    # Credentials inside the URI would be written into params, config.yaml and checkpoints: refused too.
    host = auth_server.url.removeprefix("http://")
    assert _fit(f"http://admin:{PASSWORD}@{host}") == 2
    inline = capfd.readouterr()
    assert "the URI carries credentials" in inline.err and PASSWORD not in inline.err
    assert not (in_tmp / "checkpoints").exists()

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    assert _fit(auth_server.url) == 0
    logs = capfd.readouterr()
    client = MlflowClient(auth_server.url)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["train/frames"] == 200
    written = [logs.out, logs.err, *_texts_of_run(client, run)]
    checkpoints = [path for path in (in_tmp / "checkpoints").rglob("*") if path.is_file()]
    assert checkpoints
    written += [path.read_bytes().decode("latin-1") for path in checkpoints]
    assert written and not [text for text in written if PASSWORD in text or "admin:" in text]

    # Without credentials at all, the message says which variables to set.
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    assert _fit(auth_server.url) == 2
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD are not set" in capfd.readouterr().err
