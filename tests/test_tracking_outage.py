"""A tracking server that goes away during a fit loses nothing: training goes on, what it logs waits in a
spool and goes to the server when it is back; if it is still away when the fit ends, the fit ends
normally, names the spool, and ``python -m marl_lightning replay`` sends it later. A real ``mlflow server``
hangs (SIGSTOP) and comes back (SIGCONT) during the fit, then stops for good, and is started again on the
same port and store for the replay."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from marl_lightning.__main__ import cli_main
from marl_lightning.tracking.spool import SENT_SUFFIX, read
from tests.conftest import REPO, checkpoint_iterations, cli_command
from tests.tracking_server import TrackingServer

pytestmark = [pytest.mark.simulator, pytest.mark.slow]
ITERATIONS = 16
EXPERIMENT = "mappo-navigation"
RUN_FOLDER = Path("checkpoints") / EXPERIMENT / f"{EXPERIMENT}-seed0"


def _iterations(path: Path) -> int:
    return checkpoint_iterations(path) if path.exists() else 0


def _logged_up_to(url: str, run_id: str) -> int:
    """The last iteration whose metrics the server has (0 if none, or if it does not answer yet)."""
    try:
        history = MlflowClient(url).get_metric_history(run_id, "train/iterations")
    except Exception:  # noqa: BLE001 - still catching up
        return 0
    return int(max((m.value for m in history), default=0))


def _wait(condition, proc: subprocess.Popen, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"the fit ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _replay(*args: str) -> int:
    with pytest.raises(SystemExit) as ended:
        cli_main(["replay", *args])
    return ended.value.code


def test_metrics_survive_a_server_that_goes_away_twice_and_the_spool_is_replayed(in_tmp, monkeypatch, capsys):
    server = TrackingServer(in_tmp)
    server.start()
    # The fit's env steps wait while this file exists: the test holds training in place while the backlog
    # goes out, so that sending during training is tested however slow the machine is.
    gate = in_tmp / "hold-the-fit"
    command = cli_command(
        "fit", "--model.total_frames", str(ITERATIONS * 200),
        "--data.env", "tests.gated_env.GatedVmas", "--data.env.init_args.gate", str(gate),
        "--trainer.logger.init_args.tracking_uri", server.url,
        "--trainer.logger.init_args.retry_interval_s", "0.2",
        "--trainer.logger.init_args.spool_wait_s", "2",
    )
    # MLflow's own retries (minutes) are off and a request gives up after 2 s: the spool's thread tries
    # again every 0.2 s.
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    stderr_path = in_tmp / "fit.stderr"
    checkpoint = in_tmp / RUN_FOLDER / "last.ckpt"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(command, cwd=in_tmp, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _wait(lambda: _iterations(checkpoint) >= 2, proc, "iteration 2")
            server.pause()  # 1. the server hangs ...
            paused_at = _iterations(checkpoint)
            _wait(lambda: _iterations(checkpoint) > paused_at, proc, "an iteration logged to the hung server")
            gate.touch()  # training waits in its next env step (the spool's thread goes on) ...
            _wait(lambda: "does not answer" in stderr_path.read_text(), proc, "the outage was noticed")
            away_at = _iterations(checkpoint)
            gate.unlink()  # ... until the outage is noticed (a request's 2 s timeout), and goes on
            _wait(lambda: _iterations(checkpoint) >= away_at + 2, proc, "two iterations more")
            spools = list((in_tmp / RUN_FOLDER).glob("mlflow-spool-*.jsonl"))
            assert len(spools) == 1 and len(read(spools[0])[1]) >= 2  # their metrics wait in it
            gate.touch()  # training waits again ...
            server.resume()  # ... while the server comes back and the backlog goes out
            _wait(lambda: "answers again" in stderr_path.read_text(), proc, "the server was back")
            # Records go out in order: once the server has an iteration logged during the outage, it has
            # everything before it (on a loaded machine the queue may never run empty while training).
            run_id = spools[0].name.removeprefix("mlflow-spool-").removesuffix(".jsonl")
            _wait(lambda: _logged_up_to(server.url, run_id) >= away_at + 2, proc, "the backlog was sent")
            back_at = _iterations(checkpoint)
            server.stop()  # 2. it stops, for the rest of the fit
            gate.unlink()  # training goes on
            proc.wait(timeout=600)
        finally:
            proc.kill()
            server.stop()
    output = stderr_path.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert back_at < ITERATIONS, "the server came back too late to test sending during training"
    (spool,) = spools
    # The fit ended normally and said where the records are and how to send them.
    assert f"python -m marl_lightning replay {spool.relative_to(in_tmp)}" in output, output[-3000:]
    header, records, sent = read(spool)
    assert header["tracking_uri"] == server.url and records[-1] == {"status": "FINISHED",
                                                                     "end_time": records[-1]["end_time"]}
    assert any(record.get("folder") == "checkpoints" for record in records)  # the final checkpoint too

    server.start()
    try:
        monkeypatch.chdir(in_tmp)  # the command as printed, relative to where the fit ran
        assert _replay(str(spool.relative_to(in_tmp))) == 0
        assert "record(s)" in capsys.readouterr().out
        assert not spool.exists() and not Path(f"{spool}{SENT_SUFFIX}").exists()
        client = MlflowClient(server.url)
        (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
        assert run.info.status == "FINISHED"
        # Every metric of every iteration is in the run: each train/ metric once per iteration.
        train_keys = [key for key in run.data.metrics if key.startswith("train/")]
        assert "train/return_mean" in train_keys
        for key in train_keys:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert len(steps) == ITERATIONS and len(set(steps)) == ITERATIONS, key
        assert run.data.metrics["train/iterations"] == ITERATIONS
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
        assert artifacts == ["checkpoints/last.ckpt"]
        # A second replay of the same (now sent) spool is refused clearly, not resent.
        assert _replay(str(spool)) == 2
        assert "does not exist" in capsys.readouterr().err
    finally:
        server.stop()


def test_a_spool_cut_off_by_a_kill_keeps_its_complete_records(tmp_path):
    path = tmp_path / "mlflow-spool-abc.jsonl"
    header = {"spool": 1, "tracking_uri": "http://127.0.0.1:1", "run_id": "abc"}
    record = {"tag": ["k", "v"]}
    path.write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n" + '{"batch": {"metr')
    Path(f"{path}{SENT_SUFFIX}").write_text("0")
    assert read(path) == (header, [record], 0)
    path.write_text(json.dumps({"not": "a spool"}) + "\n")
    with pytest.raises(ValueError, match="not an MLflow spool"):
        read(path)


def test_a_spool_left_by_a_killed_fit_is_sent_by_the_next_one_from_where_it_stopped(tmp_path):
    # What a resumed fit does with the spool of its run (the logger opens it when it continues the run):
    # the records not yet delivered are sent, in order, and the file removed. Here into a local store.
    from marl_lightning.tracking.spool import MetricSpool, spool_path

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("e"))
    run_id = run.info.run_id
    path = spool_path(tmp_path / "run", run_id)
    path.parent.mkdir()
    header = {"spool": 1, "tracking_uri": "http://127.0.0.1:1", "run_id": run_id}
    batch = [{"batch": {"metrics": [["loss", float(i), 1000 + i, i]], "params": [], "tags": []}}
             for i in range(3)]
    lines = [json.dumps(line) for line in [header, *batch]]
    path.write_text("\n".join(lines) + '\n{"batch": {"metr')  # the kill cut the last write
    Path(f"{path}{SENT_SUFFIX}").write_text("1")  # the server had the first record
    spool = MetricSpool(path, client, uri, run_id, retry_interval_s=0.1)
    spool.put({"status": "FINISHED", "end_time": 5000})
    assert spool.close(timeout_s=30)
    assert not path.exists() and not Path(f"{path}{SENT_SUFFIX}").exists()
    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 2.0)]
    assert client.get_run(run_id).info.status == "FINISHED"
