"""User errors: one paragraph naming field, value and fix; exit status != 0; no traceback; no MLflow run."""

import subprocess

import pytest

from marl_lightning.__main__ import cli_main
from tests.conftest import CONF, cli_command

CASES = [
    (["--data.env.init_args.scenario", "navigatoin"], ["scenario", "navigatoin", "navigation"]),
    (["--model.lr", "0"], ["model.lr", "0"]),
    (["--model.lr=-1e-3"], ["model.lr", "-0.001"]),
    (["--model.clip_epsilon", "0"], ["model.clip_epsilon", "0"]),
    (
        ["--model.minibatch_size", "7"],
        ["minibatch_size (7)", "frames_per_batch (6000)", "--model.minibatch_size"],
    ),
    (["--data.num_envs", "0"], ["data.num_envs", "0"]),
    (["--model.total_frames", "100"], ["model.total_frames (100)", "data.frames_per_batch (6000)"]),
    (["--model.no_such_key", "1"], ["no_such_key"]),
]


@pytest.mark.parametrize(("args", "words"), CASES, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_bad_input_is_reported(args, words, in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(CONF / "mappo.yaml"), *args])
    assert exit_info.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "usage:" not in err
    for word in words:
        assert word in err, f"{word!r} missing from: {err}"
    assert not (in_tmp / "mlflow.db").exists()
    assert not (in_tmp / "checkpoints").exists()


def test_bad_input_in_a_real_process(in_tmp):
    proc = subprocess.run(
        cli_command("fit", "--model.lr", "0", small=False),
        capture_output=True,
        text=True,
        cwd=in_tmp,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "model.lr must be > 0, got 0.0" in proc.stderr
    assert not (in_tmp / "mlflow.db").exists()
    assert not (in_tmp / "checkpoints").exists()
