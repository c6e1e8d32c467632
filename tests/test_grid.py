"""``python -m marl_lightning grid``: planning, checks before any run, the local and submitit launchers,
parent/child MLflow runs, skipping finished runs, resuming unfinished ones, recording failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from marl_lightning.__main__ import cli_main
from marl_lightning.grid.plan import plan_runs
from marl_lightning.grid.spec import parse_grid
from marl_lightning.grid.tracking import ERROR_ARTIFACT
from tests.conftest import CONF

# Two iterations of the ratio game (fast), small networks; an evaluation after each iteration.
TINY = """
name: {name}
algorithms: {algorithms}
tasks: [ratio_game]
seeds: {seeds}
set:
  model.total_frames: {frames}
  data.num_envs: 10
  data.frames_per_batch: 100
  data.eval_episodes: 4
  model.init_args.minibatch_size: 50
  model.init_args.num_epochs: 1
  model.init_args.actor_cells: [16]
  model.init_args.critic_cells: [16]
  trainer.val_check_interval: 1
  trainer.enable_model_summary: false
"""


def write_grid(
    folder: Path,
    name: str = "tiny",
    algorithms: str = "[mappo, ippo]",
    seeds: str = "[0, 1]",
    frames: int = 200,
    extra: str = "",
) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(TINY.format(name=name, algorithms=algorithms, seeds=seeds, frames=frames) + extra)
    return path


def grid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marl_lightning", "grid", *args], capture_output=True, text=True, timeout=900
    )


def children(client: MlflowClient, experiment: str) -> dict[str, object]:
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {r.info.run_name: r for r in runs if r.data.tags.get("grid.role") != "parent"}


def test_plan_is_the_product_of_entries_axes_and_seeds(tmp_path):
    path = write_grid(
        tmp_path,
        algorithms="[mappo, {label: ippo_scaled, config: ippo, set: {model.init_args.clip_budget: 0.4}}]",
        extra="axes:\n  model.init_args.lr: [0.001, 0.0003]\n",
    )
    spec, dry_run, text = parse_grid(["--config", str(path), "--seeds", "[3]"])
    runs = plan_runs(spec)
    assert not dry_run and "ippo_scaled" in text
    assert [r.name for r in runs] == [
        "mappo-ratio_game-lr=0.001-seed3",
        "mappo-ratio_game-lr=0.0003-seed3",
        "ippo_scaled-ratio_game-lr=0.001-seed3",
        "ippo_scaled-ratio_game-lr=0.0003-seed3",
    ]
    scaled = runs[2]
    assert scaled.configs[0] == (CONF / "ippo.yaml").resolve()
    args = scaled.setting_args()
    assert ("--model.init_args.clip_budget", "0.4") in zip(args[::2], args[1::2], strict=True)
    assert scaled.setting_args()[-2:] == ["--model.init_args.lr", "0.001"]  # the axis comes last: it wins


@pytest.mark.slow
def test_grid_runs_children_of_one_parent_skips_finished_and_records_failures(in_tmp):
    path = write_grid(in_tmp)
    result = grid("--config", str(path), "--jobs", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 finished, 0 skipped" in result.stdout
    assert result.stdout.count("FINISHED, eval/return_mean") == 4  # one progress line per run
    client = MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`grid.role` = 'parent'")
    assert parent.info.status == "FINISHED" and parent.data.metrics["grid/finished"] == 4
    runs = children(client, "tiny")
    assert sorted(runs) == sorted(f"{a}-ratio_game-seed{s}" for a in ("mappo", "ippo") for s in (0, 1))
    for name, run in runs.items():
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert (tags["grid"], tags["grid.run"], tags["task"]) == ("tiny", name, "ratio_game")
        assert tags["algorithm"] == name.split("-")[0] and tags["seed"] == name[-1]
        assert tags["n_agents"] == "2" and tags["task.optimum"] == "1.0"
        assert {"version.torch", "version.torchrl", "version.lightning", "host", "device"} <= set(tags)
        assert run.data.params["actor_cells"] == "[16]" and run.data.params["num_envs"] == "10"  # hparams
        assert "checkpoints/last.ckpt" in [
            a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")
        ]
    # Seeds 0 and 1 of the same algorithm differ; the same seed of two algorithms starts the same env.
    assert runs["mappo-ratio_game-seed0"].data.metrics != runs["mappo-ratio_game-seed1"].data.metrics

    # Rerun with one more algorithm whose env cannot be built: the finished runs are skipped, the new ones
    # fail, are recorded FAILED with the error's last lines, and the command says so (exit status 1).
    broken = write_grid(
        in_tmp,
        algorithms="[mappo, ippo, {label: broken, config: mappo, set: {data.env.init_args.max_steps: 0}}]",
    )
    result = grid("--config", str(broken), "--jobs", "2")
    assert result.returncode == 1
    assert "0 finished, 4 skipped (finished earlier), 2 failed" in result.stdout
    assert "FAILED: broken-ratio_game-seed0: log grids/tiny/logs/broken-ratio_game-seed0.log" in result.stdout
    failed = children(client, "tiny")["broken-ratio_game-seed0"]
    assert failed.info.status == "FAILED" and failed.data.tags["mlflow.parentRunId"] == parent.info.run_id
    error = client.download_artifacts(failed.info.run_id, ERROR_ARTIFACT, str(in_tmp))
    assert "max_steps" in Path(error).read_text()
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`grid.role` = 'parent'")
    assert parent.info.status == "FAILED" and parent.data.metrics["grid/failed"] == 2


@pytest.mark.slow
def test_submitit_launcher_runs_the_array_through_submitit(in_tmp):
    """The SLURM path minus sbatch: submitit's local executor runs the same array of fits."""
    pytest.importorskip("submitit")
    path = write_grid(in_tmp, algorithms="[ippo]", seeds="[0]", frames=100)
    result = grid("--config", str(path), "--launcher", "slurm", "--slurm.cluster", "local")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted 1 run as submitit (local)" in result.stdout
    runs = children(MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}"), "tiny")
    assert {r.info.status for r in runs.values()} == {"FINISHED"} and len(runs) == 1
    assert list((in_tmp / "grids" / "tiny" / "slurm").iterdir())  # submitit's job folder


@pytest.mark.parametrize(
    ("algorithms", "extra", "message"),
    [
        ("[mapo]", "", "algorithm config 'mapo' does not exist"),
        ("[mappo]", "tasks: [navigaton]\n", "task config 'navigaton' does not exist"),
        ("[mappo]", "axes:\n  model.init_args.clip_epsilonn: [0.1]\n", "clip_epsilonn"),
        ("[mappo]", "axes:\n  model.init_args.clip_epsilon: [abc]\n", "clip_epsilon"),
        ("[mappo]", "axes:\n  model.init_args.clip_epsilon: []\n", "axis 'model.init_args.clip_epsilon'"),
        ("[]", "", "`algorithms` is empty"),
        ("[mappo, mappo]", "", "appears twice"),
        ("[mappo, {label: mappo, config: ippo}]", "", "appears twice"),
    ],
)
def test_bad_grid_is_one_paragraph_before_any_run(in_tmp, capsys, algorithms, extra, message):
    path = write_grid(in_tmp, algorithms=algorithms, extra=extra)
    with pytest.raises(SystemExit) as exit_:
        cli_main(["grid", "--config", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (in_tmp / "mlflow.db").exists() and not (in_tmp / "grids").exists()


def test_duplicate_seed_and_missing_launcher_are_refused(in_tmp, capsys, monkeypatch):
    path = write_grid(in_tmp, seeds="[0, 0]")
    with pytest.raises(SystemExit):
        cli_main(["grid", "--config", str(path)])
    assert "appears twice" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    with pytest.raises(SystemExit) as exit_:
        cli_main(["grid", "--config", str(write_grid(in_tmp)), "--launcher", "slurm"])
    assert exit_.value.code == 2
    assert "needs submitit, which is not installed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli_main(["grid", "--config", str(path), "--jobs", "many"])
    assert exit_.value.code == 2 and 'Parser key "jobs"' in capsys.readouterr().err
    assert not (in_tmp / "mlflow.db").exists()


@pytest.mark.parametrize("path", sorted((CONF / "grids").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_grid_file_in_conf_is_a_valid_grid(path):
    from marl_lightning.grid.plan import check_runs

    spec, _, _ = parse_grid(["--config", str(path)])
    runs = plan_runs(spec)
    assert runs and len({r.name for r in runs}) == len(runs)
    check_runs(runs)  # every run's configuration parses as a fit


@pytest.mark.slow
def test_ctrl_c_stops_the_grid_and_a_rerun_resumes_it(in_tmp):
    """A dry run lists the runs and creates nothing. SIGINT to the grid: no further fit starts, the running
    one ends KILLED after a checkpoint, the parent is KILLED; a dry run then lists it as to resume from its
    checkpoint; the same command again resumes the killed run in the same MLflow run and runs the rest.
    (Any unfinished run with a checkpoint resumes, KILLED or FAILED alike: ``grid.command._state``.)"""
    import signal
    import time

    path = write_grid(in_tmp, algorithms="[mappo]", seeds="[0, 1]", frames=1000)
    dry = grid("--config", str(path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    for name in ("mappo-ratio_game-seed0", "mappo-ratio_game-seed1"):
        assert f"new  {name}" in dry.stdout
    assert "--seed_everything 1" in dry.stdout
    assert not (in_tmp / "mlflow.db").exists() and not (in_tmp / "checkpoints").exists()
    command = [sys.executable, "-m", "marl_lightning", "grid", "--config", str(path)]
    proc = subprocess.Popen(command, cwd=in_tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = in_tmp / "checkpoints" / "tiny" / "mappo-ratio_game-seed0" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert not (in_tmp / "grids" / "tiny" / "logs" / "mappo-ratio_game-seed1.log").exists()  # never started
    client = MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}")
    (killed,) = children(client, "tiny").values()
    assert killed.info.status == "KILLED"
    interrupted_at = int(torch.load(checkpoint, weights_only=True)["state_dict"]["frames"])
    assert interrupted_at < 1000
    dry = grid("--config", str(path), "--dry-run")
    assert "resume  mappo-ratio_game-seed0" in dry.stdout and "--ckpt_path" in dry.stdout
    assert "new  mappo-ratio_game-seed1" in dry.stdout

    result = grid("--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    runs = children(client, "tiny")
    assert runs["mappo-ratio_game-seed0"].info.run_id == killed.info.run_id  # the same run, continued
    assert {r.info.status for r in runs.values()} == {"FINISHED"} and len(runs) == 2
    frames = [m.step for m in client.get_metric_history(killed.info.run_id, "train/frames")]
    # Every iteration after the checkpoint is logged once more by the resumed fit (the iteration in flight
    # when Ctrl-C came may have been checkpointed before Lightning logged it: issue 12).
    assert frames[-1] == 1000
    assert sorted(set(frames)) == list(range(100, 1001, 100))  # every iteration, none lost
    assert set(range(interrupted_at + 100, 1001, 100)) <= set(frames)
