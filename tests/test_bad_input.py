"""Bad input: one paragraph naming the field, the value and the fix; exit status 2; no traceback; no MLflow
run and no checkpoint folder. Every case here is a row of the table in docs/reliability.md."""

from __future__ import annotations

import pathlib
import subprocess

import pytest
import torch

from marl_lightning.__main__ import cli_main
from tests.conftest import CONF, SMALL_RUN_ARGS, cli_command

MAPPO = ["--config", str(CONF / "mappo.yaml")]
SMALL = [*MAPPO, *SMALL_RUN_ARGS]

# (id, arguments after `fit`, words the message must hold). "{ckpt}": a MAPPO navigation checkpoint at the
# small sizes; "{pickled}": a checkpoint carrying a pickled object; "{garbage}": a file that is none.
CASES = [
    ("unknown-algorithm", [*MAPPO, "--model.class_path", "marl_lightning.NoSuch"],
     ["model: there is no class marl_lightning.NoSuch", "MAPPO"]),
    ("unknown-env", [*MAPPO, "--data.env", "marl_lightning.envs.NoSuchEnv"],
     ["data.env: there is no class marl_lightning.envs.NoSuchEnv", "Vmas"]),
    ("unknown-scenario", [*MAPPO, "--data.env.init_args.scenario", "navigatoin"],
     ["scenario", "'navigatoin'", "navigation"]),
    ("unknown-model-key", [*MAPPO, "--model.shar_actor_params", "true"],
     ["model.shar_actor_params", "no setting", "share_actor_params"]),
    ("unknown-trainer-key", [*MAPPO, "--trainer.no_such_option", "3"], ["--trainer.no_such_option"]),
    ("wrong-type-float", [*MAPPO, "--model.lr", "abc"], ["model.lr: expected a float, got 'abc'"]),
    ("wrong-type-int", [*MAPPO, "--data.num_envs", "2.5"], ["data.num_envs: expected an int, got '2.5'"]),
    ("wrong-choice", [*MAPPO, "--model.activation", "gelu"],
     ["model.activation: 'gelu' is not one of 'tanh', 'relu'"]),
    ("wrong-type-seed", [*MAPPO, "--seed_everything", "abc"], ["seed_everything", "'abc'"]),
    ("zero-envs", [*MAPPO, "--data.num_envs", "0"],
     ["data.num_envs must be >= 1, got 0", "--data.num_envs 60"]),
    ("negative-frames-per-batch", [*MAPPO, "--data.frames_per_batch=-600"],
     ["data.frames_per_batch (-600)", "--data.frames_per_batch 6000"]),
    ("zero-minibatch", [*MAPPO, "--model.minibatch_size", "0"], ["model.minibatch_size must be >= 1, got 0"]),
    ("zero-epochs", [*MAPPO, "--model.num_epochs", "0"], ["model.num_epochs must be >= 1, got 0"]),
    ("zero-budget", [*MAPPO, "--model.total_frames", "0"], ["model.total_frames must be >= 1, got 0"]),
    ("budget-below-one-iteration", [*MAPPO, "--model.total_frames", "100"],
     ["model.total_frames (100)", "data.frames_per_batch (6000)"]),
    ("zero-lr", [*MAPPO, "--model.lr", "0"], ["model.lr must be > 0, got 0"]),
    ("negative-lr", [*MAPPO, "--model.lr=-1e-3"], ["model.lr must be > 0, got -0.001"]),
    ("zero-grad-norm", [*MAPPO, "--model.max_grad_norm", "0"], ["model.max_grad_norm must be > 0, got 0"]),
    ("negative-entropy-coeff", [*MAPPO, "--model.entropy_coeff=-1"], ["model.entropy_coeff (-1.0)", ">= 0"]),
    ("gamma-above-one", [*MAPPO, "--model.gamma", "1.5"], ["model.gamma must lie in [0, 1], got 1.5"]),
    ("lambda-below-zero", [*MAPPO, "--model.lmbda=-0.1"], ["model.lmbda must lie in [0, 1], got -0.1"]),
    ("zero-clip", [*MAPPO, "--model.clip_epsilon", "0"], ["model.clip_epsilon must be > 0, got 0"]),
    ("zero-clip-budget", [*MAPPO, "--model.clip_budget", "0"], ["model.clip_budget must be > 0, got 0"]),
    ("minibatch-not-dividing", [*MAPPO, "--model.minibatch_size", "7"],
     ["model.minibatch_size (7) must divide data.frames_per_batch (6000)", "--model.minibatch_size"]),
    ("frames-not-multiple-of-envs", [*MAPPO, "--data.frames_per_batch", "6001"],
     ["data.frames_per_batch (6001) must be a positive multiple of data.num_envs (60)"]),
    ("zero-eval-episodes", [*MAPPO, "--data.eval_episodes", "0"], ["data.eval_episodes must be >= 1, got 0"]),
    ("zero-checkpoint-interval", [*MAPPO, "--trainer.callbacks.init_args.every_n_iterations", "0"],
     ["IterationCheckpoint.every_n_iterations must be >= 1, got 0"]),
    ("zero-skips", [*MAPPO, "--model.max_skips_in_a_row", "0"], ["model.max_skips_in_a_row must be >= 1"]),
    ("tabular-on-several-processes", ["--config", str(CONF / "seqppo_pessimistic.yaml"),
                                      "--trainer.strategy", "ddp", "--trainer.devices", "2"],
     ["PessimisticSequentialPPO runs on one process, not 2", "exact tabular", "--trainer.strategy ddp"]),
    ("algorithm-cannot-handle-task",
     ["--config", str(CONF / "seqppo_pessimistic.yaml"), "--config", str(CONF / "env" / "navigation.yaml")],
     ["PessimisticSequentialPPO", "tabular", "conf/seqppo.yaml"]),
    ("agents-the-env-cannot-take", [*MAPPO, "--data.env.init_args.scenario", "balance",
                                    "--data.env.init_args.n_agents", "1"],
     ["task 'balance' cannot be built", "n_agents=1", "assert self.n_agents > 1"]),
    ("zero-agents", [*MAPPO, "--data.env.init_args.n_agents", "0"],
     ["data.env.n_agents must be >= 1, got 0"]),
    ("checkpoint-of-another-algorithm", ["--config", str(CONF / "ippo.yaml"), *SMALL_RUN_ARGS,
                                         "--ckpt_path", "{ckpt}"],
     ["the checkpoint is of MAPPO, this config trains IPPO", "conf/mappo.yaml"]),
    ("checkpoint-of-other-networks", [*SMALL, "--model.actor_cells", "[64]", "--ckpt_path", "{ckpt}"],
     ["other shapes", "model.actor_cells is [32, 32] in it, [64] here"]),
    ("checkpoint-of-another-task",
     [*SMALL, "--data.env.init_args.scenario", "balance", "--ckpt_path", "{ckpt}"],
     ["another task", "data.env.scenario is 'navigation' in it, 'balance' here"]),
    ("resume-last-without-checkpoint", [*SMALL, "--ckpt_path", "last"],
     ["--ckpt_path last: this run has no checkpoint yet", "checkpoints/mappo-navigation"]),
    ("checkpoint-missing", [*SMALL, "--ckpt_path", "nowhere/last.ckpt"],
     ["--ckpt_path nowhere/last.ckpt: no such file"]),
    ("checkpoint-with-pickled-code", [*SMALL, "--ckpt_path", "{pickled}"],
     ["refused", "pickled Python objects"]),
    ("checkpoint-not-a-checkpoint", [*SMALL, "--ckpt_path", "{garbage}"], ["not a readable checkpoint"]),
    ("yaml-syntax-error", [*MAPPO, "--config", "{broken_yaml}"], ["not valid YAML at line 4"]),
    ("config-file-missing", [*MAPPO, "--config", str(CONF / "mapo.yaml")],
     ["mapo.yaml: the file does not exist", "mappo.yaml"]),
    ("tracking-server-unreachable", [*MAPPO, "--trainer.logger.init_args.tracking_uri", "http://127.0.0.1:9"],
     ["tracking_uri: the MLflow tracking server at http://127.0.0.1:9 does not answer", "sqlite:///mlflow.db"]),
    ("tracking-uri-with-credentials",
     [*MAPPO, "--trainer.logger.init_args.tracking_uri", "http://admin:secret@127.0.0.1:9"],
     ["tracking_uri: the URI carries credentials", "Use http://127.0.0.1:9", "MLFLOW_TRACKING_PASSWORD"]),
    ("tracking-store-read-only", [*MAPPO, "--trainer.logger.init_args.tracking_uri", "sqlite:////proc/mlflow.db"],
     ["tracking_uri: sqlite:////proc/mlflow.db: the store cannot be written"]),
    ("gpu-on-a-cpu-machine", [*MAPPO, "--trainer.accelerator", "gpu"], ["trainer:", "gpu", "no GPU"]),
    ("zero-devices", [*MAPPO, "--trainer.devices", "0"], ["trainer:", "devices"]),
    ("fsdp-on-cpu", [*MAPPO, "--trainer.strategy", "fsdp"], ["trainer:", "fsdp", "GPU"]),
    ("processes-without-rollout-ddp", [*MAPPO, "--trainer.devices", "2", "--trainer.strategy", "auto"],
     ["trainer.strategy: DDPStrategy with 2 processes", "--trainer.strategy rollout_ddp"]),
]


class _Touch:
    """Unpickling it would create a file: the proof that loading ran code."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A real checkpoint (one MAPPO iteration at the small sizes), a poisoned copy, garbage, broken YAML."""
    folder = tmp_path_factory.mktemp("checkpoints")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        cli_main(["fit", *SMALL, "--model.total_frames", "200", "--trainer.logger", "false",
                  "--trainer.callbacks.init_args.dirpath", str(folder / "mappo")])
    checkpoint = folder / "mappo" / "last.ckpt"
    pickled = folder / "pickled.ckpt"
    torch.save({**torch.load(checkpoint, weights_only=True), "extra": _Touch(folder / "code-ran")}, pickled)
    garbage = folder / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    broken = folder / "broken.yaml"
    broken.write_text("model:\n  init_args:\n    lr: [1, 2\n")
    return {"ckpt": str(checkpoint), "pickled": str(pickled), "garbage": str(garbage),
            "broken_yaml": str(broken), "marker": str(folder / "code-ran")}


def _no_mlflow_run(folder: pathlib.Path) -> bool:
    """No run in the default store (MLflow creates the SQLite file itself when its client is built)."""
    if not (folder / "mlflow.db").exists():
        return True
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    return not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_there_are_at_least_25_kinds():
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES) >= 25


@pytest.mark.parametrize(("args", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_reported(args, words, files, in_tmp, capsys):
    args = [arg.format(**files) for arg in args]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "usage:" not in err
    (paragraph,) = [line for line in err.splitlines() if line.startswith("marl_lightning: error:")]
    for word in words:
        assert word in paragraph, f"{word!r} missing from: {paragraph}"
    assert _no_mlflow_run(in_tmp)
    assert not (in_tmp / "checkpoints").exists()
    assert not pathlib.Path(files["marker"]).exists()  # nothing in a checkpoint ever runs


def test_bad_input_in_a_real_process_names_the_command_the_user_typed(in_tmp):
    proc = subprocess.run(cli_command("fit", "--model.lr", "abc", small=False), capture_output=True,
                          text=True, cwd=in_tmp, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "marl_lightning: error: model.lr: expected a float, got 'abc'." in proc.stderr
    assert "Run `python -m marl_lightning fit --help` to list every setting." in proc.stderr
    assert "__main__.py" not in proc.stderr
    assert not (in_tmp / "mlflow.db").exists()
    assert not (in_tmp / "checkpoints").exists()
