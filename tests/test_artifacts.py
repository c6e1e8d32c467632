"""``runs:/<run_id>/<path>`` as ``--config`` and ``--ckpt_path``: downloaded from the tracking store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from marl_lightning.__main__ import cli_main
from marl_lightning.tracking.artifacts import resolve_mlflow_arguments


@pytest.fixture
def logged_run(tmp_path: Path) -> tuple[str, str]:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    run = client.create_run(client.create_experiment("e"))
    client.log_text(run.info.run_id, "seed_everything: 5\n", "config.yaml")
    client.log_text(run.info.run_id, "weights", "checkpoints/last.ckpt")
    return store, run.info.run_id


def test_runs_uris_become_local_copies_and_other_arguments_stay(logged_run):
    store, run_id = logged_run
    argv = [
        "test",
        "--config", f"runs:/{run_id}/config.yaml",
        f"--ckpt_path=runs:/{run_id}/checkpoints/last.ckpt",
        "--trainer.logger.init_args.tracking_uri", store,
        "--config", "conf/mappo.yaml",
    ]  # fmt: skip
    resolved = resolve_mlflow_arguments(argv)
    assert Path(resolved[2]).read_text() == "seed_everything: 5\n"
    option, path = resolved[3].split("=", 1)
    assert option == "--ckpt_path" and Path(path).read_text() == "weights"
    assert resolved[4:] == argv[4:] and resolved[:2] == argv[:2]


def test_a_missing_artifact_is_one_paragraph(logged_run, capsys):
    store, run_id = logged_run
    with pytest.raises(SystemExit) as exit_:
        cli_main(
            [
                "test",
                "--config",
                f"runs:/{run_id}/nope.yaml",
                "--trainer.logger.init_args.tracking_uri",
                store,
            ]
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot read runs:/{run_id}/nope.yaml" in err and "Traceback" not in err
