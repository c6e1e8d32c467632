"""`python -m marl_lightning fit` in a real process leaves a complete MLflow run (SQLite store)."""

from __future__ import annotations

import subprocess

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, cli_command

pytestmark = pytest.mark.simulator


def test_cli_fit_two_iterations_lands_in_mlflow(in_tmp):
    proc = subprocess.run(
        cli_command(
            "fit",
            "--model.total_frames",
            "400",
            "--seed_everything",
            "7",
            "--trainer.enable_progress_bar",
            "true",
            "--trainer.logger.init_args.log_system_metrics",
            "true",
            "--trainer.logger.init_args.system_metrics_interval_s",
            "0.5",
        ),
        capture_output=True,
        text=True,
        cwd=in_tmp,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mappo-navigation")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "mappo-navigation-seed7"
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["clip_epsilon"] == "0.2"
    assert params["minibatch_size"] == "100"
    assert params["frames_per_batch"] == "200"
    assert params["algorithm"] == "MAPPO"
    assert params["env/scenario"] == "navigation"
    assert params["env_spec/n_agents"] == "3"
    metrics = run.data.metrics
    for name in (
        "train/return_mean",
        "train/frames",
        "perf/frames_per_s",
        "perf/collect_s",
        "perf/update_s",
        "perf/advantages_s",
        "perf/optimise_s",
        "perf/statistics_s",
        "loss/policy",
        "loss/value",
        "tr/kl/agent_0",
        "tr/kl/agent_2",
        "tr/ratio_min/epoch_0",
        "tr/ratio_max/epoch_1",
        "eval/return_mean",
    ):
        assert name in metrics, name
    frames = client.get_metric_history(run.info.run_id, "train/frames")
    assert [(m.step, m.value) for m in frames] == [(200, 200.0), (400, 400.0)]
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "config.yaml" in artifacts
    config = client.download_artifacts(run.info.run_id, "config.yaml", str(in_tmp))
    with open(config) as file:
        text = file.read()
    assert "class_path: marl_lightning.MAPPO" in text and "seed_everything: 7" in text
    # Tags that make runs comparable, the final checkpoint as an artifact, MLflow's system metrics.
    tags = run.data.tags
    expected = {"algorithm": "mappo", "task": "navigation", "n_agents": "3", "seed": "7", "stage": "fit"}
    assert {key: tags.get(key) for key in expected} == expected
    assert (tags["device"], tags["strategy"], tags["world_size"]) == ("cpu", "single_device", "1")
    assert tags["version.torch"] == torch.__version__ and tags["version.marl_lightning"] == "0.1.0"
    if (REPO / ".git").exists():  # run from a git checkout
        assert len(tags["git.commit"]) == 40 and tags["git.dirty"] in ("true", "false")
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == [
        "checkpoints/last.ckpt"
    ]
    logged = torch.load(
        client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt", str(in_tmp)), weights_only=True
    )
    assert int(logged["state_dict"]["frames"]) == 400  # the final state
    assert any(name.startswith("system/cpu_utilization") for name in metrics), sorted(metrics)
    # the progress bar reports frames, throughput and return while training
    for name in ("train/frames=", "perf/frames_per_s=", "train/return_mean="):
        assert name in proc.stdout + proc.stderr, name


def test_runs_and_checkpoints_are_named_after_algorithm_and_task(in_tmp):
    from marl_lightning.cli import MarlCLI
    from tests.conftest import CONF, cli_args

    MarlCLI(
        args=cli_args(
            "fit",
            "--config",
            str(CONF / "env" / "ratio_game.yaml"),
            "--model.total_frames",
            "3000",
            "--trainer.limit_val_batches",
            "0",
            # absolute: MLflow caches stores by URI within a process, across tests' working dirs
            "--trainer.logger.init_args.tracking_uri",
            f"sqlite:///{in_tmp / 'mlflow.db'}",
            config="ippo.yaml",
        )
    )
    client = MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ippo-ratio_game").experiment_id])
    assert run.info.run_name == "ippo-ratio_game-seed0"
    assert (in_tmp / "checkpoints" / "ippo-ratio_game" / "ippo-ratio_game-seed0" / "last.ckpt").exists()


def test_resumed_fit_continues_its_mlflow_run(in_tmp):
    """Interrupt-and-resume is one MLflow run: metrics go on at the restored step, a changed parameter
    keeps its first value and records the new one as a ``resumed/`` tag."""
    from marl_lightning.cli import MarlCLI
    from tests.conftest import cli_args

    def fit(total_frames: int, *extra: str) -> None:
        # an absolute store: MLflow caches stores by URI within a process, across tests' working dirs
        store = f"sqlite:///{in_tmp / 'mlflow.db'}"
        frames = str(total_frames)
        MarlCLI(
            args=cli_args(
                "fit",
                "--model.total_frames",
                frames,
                "--seed_everything",
                "3",
                "--trainer.logger.init_args.tracking_uri",
                store,
                *extra,
            )
        )

    fit(400)
    folder = in_tmp / "checkpoints" / "mappo-navigation" / "mappo-navigation-seed3"
    checkpoint = torch.load(folder / "last.ckpt", weights_only=True)
    fit(800, "--ckpt_path", "last")

    client = MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mappo-navigation").experiment_id])
    assert run.info.run_id == checkpoint["mlflow_run_id"]
    assert run.info.run_name == "mappo-navigation-seed3"
    assert run.info.status == "FINISHED"
    frames = client.get_metric_history(run.info.run_id, "train/frames")
    assert [(m.step, m.value) for m in frames] == [(s, float(s)) for s in (200, 400, 600, 800)]
    assert run.data.params["total_frames"] == "400"
    assert run.data.tags["resumed/total_frames"] == "800"
    assert run.data.params["clip_epsilon"] == "0.2"
    assert not any(key.startswith("resumed/") and key != "resumed/total_frames" for key in run.data.tags)


def test_a_checkpoint_run_missing_from_the_store_is_not_continued(in_tmp):
    from marl_lightning.tracking.loggers import MLFlowLogger

    logger = MLFlowLogger(experiment_name="x", tracking_uri=f"sqlite:///{in_tmp / 'other.db'}")
    with pytest.warns(UserWarning, match="not in the store"):
        assert not logger.continue_run("0123456789abcdef0123456789abcdef")
    assert not logger.continued
    assert logger.run_id is not None  # a fresh run
