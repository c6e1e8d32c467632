"""Four runs logging at once into one new SQLite store, as four fits started together do: nothing lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

RUNS, STEPS = 4, 20
# One fit's logging: the adapter creates the store, the experiment and the run, logs parameters and a
# metric at every step, and finishes the run. Every process waits for the go file, then all start at once.
CHILD = textwrap.dedent("""
    import sys, time, pathlib
    from marl_lightning.tracking.loggers import MLFlowLogger
    uri, index, go = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.01)
    logger = MLFlowLogger(experiment_name="mappo-navigation", run_name=f"seed{index}", tracking_uri=uri)
    logger.log_hyperparams({"seed": index, "model.lr": 5e-5, "data.num_envs": 60})
    for step in range(STEPS):
        metrics = {"train/return_mean": index + step / 100, "train/frames": step * 6000.0}
        logger.log_metrics(metrics, step=step)
    logger.finalize("success")
""").replace("STEPS", str(STEPS))


@pytest.mark.slow
def test_four_runs_at_once_into_one_new_sqlite_store_lose_nothing(in_tmp):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"  # does not exist yet: all four would create it
    go = in_tmp / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, uri, str(i), str(go)], cwd=in_tmp,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(RUNS)]
    time.sleep(3)  # every child imported and waiting
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert "database is locked" not in err
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "mappo-navigation"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == [f"seed{i}" for i in range(RUNS)]
    for run in runs:
        index = int(run.info.run_name[len("seed"):])
        assert run.info.status == "FINISHED"
        assert run.data.params == {"seed": str(index), "model.lr": "5e-05", "data.num_envs": "60"}
        history = client.get_metric_history(run.info.run_id, "train/return_mean")
        assert sorted((m.step, m.value) for m in history) == [(s, index + s / 100) for s in range(STEPS)]
