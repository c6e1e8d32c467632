"""``python -m marl_lightning compare`` on a real SQLite MLflow store of synthetic runs with known histories.

Two tasks (``alpha`` with reference returns 0 and 100 in its tags, ``beta`` without), three groups
(``good`` > ``mid`` > ``bad``), 5 seeds each, the metric logged at frames 0, 1000, …, 10000.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from rliable import library, metrics

from marl_lightning.__main__ import cli_main
from marl_lightning.compare.command import main
from marl_lightning.core.errors import ConfigError
from marl_lightning.tracking import run_tags

TASKS = ("alpha", "beta")
GROUPS = ("bad", "good", "mid")
LEVEL = {"bad": 10.0, "mid": 45.0, "good": 80.0}
SEEDS = range(5)
FRAMES = np.arange(0, 10_001, 1000)
OPTIMUM, RANDOM = 100.0, 0.0
GRID = "grid-a"
REPS = "50"  # bootstrap resamples: enough for the tests, which pin values, not coverage


def final_value(task: str, group: str, seed: int) -> float:
    """Known final returns: the group's level, a seed offset, and a task shift."""
    return (
        LEVEL[group]
        + [0.0, 3.0, -2.0, 5.0, 1.5][seed] * (1 + GROUPS.index(group))
        + (7.0 if task == "beta" else 0.0)
    )


def history(final: float) -> np.ndarray:
    """A curve rising linearly to ``final`` at the last frame."""
    return final * FRAMES / FRAMES[-1]


def _log_run(client, experiment_id, tags, metric_values, status="FINISHED", frames=FRAMES):
    run = client.create_run(experiment_id, tags=tags, run_name=tags.get(run_tags.GRID_RUN))
    now = int(time.time() * 1000)
    batch = [
        Metric(key, float(value), now + i, int(step))
        for key, values in metric_values.items()
        for i, (step, value) in enumerate(zip(frames, values, strict=True))
    ]
    client.log_batch(run.info.run_id, metrics=batch)
    if status is not None:
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def _populate(root: Path) -> None:
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    artifacts = (root / "artifacts").as_uri()
    grid = client.create_experiment(GRID, artifact_location=f"{artifacts}/grid")
    parent = client.create_run(grid, run_name=GRID, tags={run_tags.GRID_ROLE: "parent", run_tags.GRID: GRID})
    for task in TASKS:
        for group in GROUPS:
            for seed in SEEDS:
                tags = {
                    run_tags.ALGORITHM: group,
                    run_tags.TASK: task,
                    run_tags.SEED: str(seed),
                    run_tags.N_AGENTS: "3",
                    run_tags.GRID: GRID,
                    run_tags.GRID_RUN: f"{group}-{task}-seed{seed}",
                    run_tags.PARENT: parent.info.run_id,
                    run_tags.VARIANT: "base",
                }
                if task == "alpha":
                    tags |= {run_tags.TASK_OPTIMUM: str(OPTIMUM), run_tags.TASK_RANDOM: str(RANDOM)}
                final = final_value(task, group, seed)
                _log_run(
                    client,
                    grid,
                    tags,
                    {"eval/return_mean": history(final), "train/return_mean": history(final - 5)},
                )
    # Not FINISHED: left out unless --include-unfinished.
    running = {
        run_tags.ALGORITHM: "good",
        run_tags.TASK: "alpha",
        run_tags.SEED: "9",
        run_tags.PARENT: parent.info.run_id,
    }
    _log_run(client, grid, running, {"eval/return_mean": history(99.0)}, status=None)
    # A `test` of a grid run's checkpoint carries its tags; it is an evaluation, never a seed of its own
    # (if it were compared, every exact value the tests below pin would change).
    evaluation = {
        **running,
        run_tags.SEED: "0",
        run_tags.STAGE: "test",
        run_tags.GRID_RUN: "good-alpha-seed0",
    }
    _log_run(client, grid, evaluation, {"eval/return_mean": history(1000.0)})
    client.set_terminated(parent.info.run_id, "FINISHED")
    # Only train/return_mean: the default metric falls back to it.
    train_only = client.create_experiment("train-only", artifact_location=f"{artifacts}/train-only")
    for seed in SEEDS:
        for group in ("good", "bad"):
            tags = {run_tags.ALGORITHM: group, run_tags.TASK: "alpha", run_tags.SEED: str(seed)}
            _log_run(
                client, train_only, tags, {"train/return_mean": history(final_value("alpha", group, seed))}
            )
    # Uneven: groups with different seeds, budgets and tasks.
    uneven = client.create_experiment("uneven", artifact_location=f"{artifacts}/uneven")
    for task in TASKS:
        for seed in SEEDS:
            tags = {run_tags.ALGORITHM: "full", run_tags.TASK: task, run_tags.SEED: str(seed)}
            _log_run(client, uneven, tags, {"eval/return_mean": history(50.0 + seed)})
    for seed in (0, 1, 7):  # 3 other seeds, and a smaller budget (the last point at 9000 frames)
        tags = {run_tags.ALGORITHM: "short", run_tags.TASK: "alpha", run_tags.SEED: str(seed)}
        _log_run(client, uneven, tags, {"eval/return_mean": history(20.0 + seed)[:-1]}, frames=FRAMES[:-1])


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare-store")
    _populate(root)
    return root


@pytest.fixture
def store(populated, tmp_path, monkeypatch) -> str:
    """A fresh copy of the populated store per test (each test adds its own summary run)."""
    shutil.copy(populated / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _compare(store: str, *args: str, output: str = "out") -> Path:
    assert main(["--tracking-uri", store, "--reps", REPS, "--output", output, *args]) == 0
    return Path(output)


def _finals(task: str, group: str) -> np.ndarray:
    return np.array([final_value(task, group, seed) for seed in SEEDS])


def _normalised(task: str, group: str) -> np.ndarray:
    if task == "alpha":
        return (_finals(task, group) - RANDOM) / (OPTIMUM - RANDOM)
    every = np.concatenate([_finals(task, g) for g in GROUPS])
    return (_finals(task, group) - every.min()) / (every.max() - every.min())


def _summary_runs(store: str):
    client = MlflowClient(store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, f"tags.`{run_tags.GRID_ROLE}` = 'summary'")


def test_final_values_match_t_interval_and_rliable_iqm(store):
    out = _compare(store, "--experiment", GRID, "--seed", "3")
    table = pd.read_csv(out / "tasks" / "alpha" / "final_values.csv").set_index("group")
    assert list(table.index) == list(GROUPS)
    for group in GROUPS:
        x = _finals("alpha", group)
        row = table.loc[group]
        low, high = scipy.stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))
        assert row.n_seeds == 5 and row.frames_min == row.frames_max == 10_000
        np.testing.assert_allclose([row["mean"], row.mean_ci_low, row.mean_ci_high], [x.mean(), low, high])
        assert row.iqm == pytest.approx(metrics.aggregate_iqm(x[:, None]))
        # The bootstrap is rliable's, seeded by --seed.
        np.random.seed(3)
        _, ci = library.get_interval_estimates(
            {group: x[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=int(REPS)
        )
        np.testing.assert_allclose([row.iqm_ci_low, row.iqm_ci_high], ci[group][:, 0])
    md = (out / "tasks" / "alpha" / "final_values.md").read_text()
    assert "mean ± 95% CI (t)" in md and f"{_finals('alpha', 'good').mean():.4g} ±" in md
    # The learning curve's last point is the final value; its mean band is the t interval.
    curves = pd.read_csv(out / "learning_curves.csv")
    good = curves[(curves.task == "alpha") & (curves.group == "good")]
    np.testing.assert_allclose(good.frames, FRAMES)
    assert good["mean"].iloc[-1] == pytest.approx(_finals("alpha", "good").mean())
    assert good.iqm.iloc[-1] == pytest.approx(table.loc["good"].iqm)


def test_curve_iqm_is_rliables_iqm_at_every_point():
    from marl_lightning.compare.statistics import _iqm_per_point

    scores = np.random.default_rng(0).normal(size=(7, 3, 4))  # [runs, tasks, points]
    expected = [metrics.aggregate_iqm(scores[..., point]) for point in range(4)]
    np.testing.assert_allclose(_iqm_per_point(scores), expected)


def test_normalisation_uses_reference_tags_else_min_max(store):
    out = _compare(store, "--experiment", GRID)
    norm = pd.read_csv(out / "normalisation.csv").set_index("task")
    assert norm.loc["alpha", "method"] == "reference"
    assert (norm.loc["alpha", "score_0_at"], norm.loc["alpha", "score_1_at"]) == (RANDOM, OPTIMUM)
    every_beta = np.concatenate([_finals("beta", g) for g in GROUPS])
    assert norm.loc["beta", "method"] == "min-max"
    assert (norm.loc["beta", "score_0_at"], norm.loc["beta", "score_1_at"]) == (
        every_beta.min(),
        every_beta.max(),
    )
    runs = pd.read_csv(out / "runs.csv")
    for task in TASKS:
        for group in GROUPS:
            mine = runs[(runs.task == task) & (runs.group == group)].sort_values("seed")
            np.testing.assert_allclose(mine.normalised, _normalised(task, group))
    assert "min-max" in (out / "summary.md").read_text()


def test_aggregates_and_probability_of_improvement(store):
    out = _compare(store, "--experiment", GRID)
    aggregate = pd.read_csv(out / "aggregate.csv").set_index(["group", "statistic"])
    for group in GROUPS:
        scores = np.stack([_normalised(t, group) for t in TASKS], axis=1)  # [runs, tasks]
        expected = {
            "IQM": metrics.aggregate_iqm(scores),
            "mean": metrics.aggregate_mean(scores),
            "median": metrics.aggregate_median(scores),
            "optimality gap": metrics.aggregate_optimality_gap(scores),
        }
        for statistic, value in expected.items():
            row = aggregate.loc[(group, statistic)]
            assert row.value == pytest.approx(value)
            assert row.ci_low <= row.value + 1e-12 and row.value <= row.ci_high + 1e-12
    poi = pd.read_csv(out / "probability_of_improvement.csv").set_index(["x", "y"])
    assert len(poi) == 6  # every ordered pair of 3 groups
    assert poi.loc[("good", "bad")].probability_x_beats_y == pytest.approx(1.0)
    assert poi.loc[("good", "bad")].ci_low > 0.9
    assert poi.loc[("bad", "good")].probability_x_beats_y == pytest.approx(0.0)
    good, mid = (np.stack([_normalised(t, g) for t in TASKS], axis=1) for g in ("good", "mid"))
    assert poi.loc[("good", "mid")].probability_x_beats_y == pytest.approx(
        metrics.probability_of_improvement(good, mid)
    )
    efficiency = pd.read_csv(out / "sample_efficiency.csv")
    last = efficiency[efficiency.frames == FRAMES[-1]].set_index("group")
    assert last.loc["good", "iqm"] == pytest.approx(aggregate.loc[("good", "IQM")].value)


def test_files_written_and_logged_to_a_summary_run_under_the_grid(store, capsys):
    out = _compare(store, "--grid", GRID)
    expected = [
        "summary.md",
        "runs.csv",
        "marl_eval.json",
        "learning_curves.csv",
        "sample_efficiency.csv",
        "aggregate.png",
        "probability_of_improvement.png",
        "performance_profiles.png",
        "sample_efficiency.png",
        *(
            f"{stem}.{ext}"
            for stem in ("normalisation", "aggregate", "probability_of_improvement")
            for ext in ("csv", "md", "tex")
        ),
        *(
            f"tasks/{task}/{name}"
            for task in TASKS
            for name in ("final_values.csv", "final_values.md", "final_values.tex", "learning_curves.png")
        ),
    ]
    for name in expected:
        assert (out / name).stat().st_size > 0, name
    assert (out / "aggregate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r"\begin{tabular}" in (out / "aggregate.tex").read_text()
    client, summaries = _summary_runs(store)
    assert len(summaries) == 1
    summary = summaries[0]
    grid_experiment = client.get_experiment_by_name(GRID).experiment_id
    parent = client.search_runs([grid_experiment], f"tags.`{run_tags.GRID_ROLE}` = 'parent'")[0]
    assert summary.info.experiment_id == grid_experiment
    assert summary.data.tags[run_tags.PARENT] == parent.info.run_id
    assert summary.info.status == "FINISHED"
    assert summary.data.params["metric"] == "eval/return_mean" and summary.data.params["n_runs"] == "30"
    logged = {a.path for a in client.list_artifacts(summary.info.run_id, "comparison")}
    assert {"comparison/summary.md", "comparison/marl_eval.json", "comparison/aggregate.png"} <= logged
    task_files = {a.path for a in client.list_artifacts(summary.info.run_id, "comparison/tasks/alpha")}
    assert "comparison/tasks/alpha/learning_curves.png" in task_files
    printed = capsys.readouterr().out
    assert "Task alpha" in printed and "Across tasks" in printed and summary.info.run_id in printed
    # The summary run itself is never compared again.
    _compare(store, "--grid", GRID, output="again")
    assert len(pd.read_csv("again/runs.csv")) == 30


def test_marl_eval_json_structure(store):
    out = _compare(store, "--experiment", GRID)
    data = json.loads((out / "marl_eval.json").read_text())
    assert list(data) == ["marl_lightning"]
    assert sorted(data["marl_lightning"]) == list(TASKS)
    runs = data["marl_lightning"]["alpha"]["good"]
    assert list(runs) == [f"run_{i}" for i in SEEDS]
    run = runs["run_1"]
    assert list(run)[-1] == "absolute_metrics"  # marl-eval reads a run's last key as its absolute metrics
    assert list(run)[:-1] == [f"step_{j}" for j in range(len(FRAMES))]
    assert run["step_10"] == {
        "step_count": 10_000,
        "return": [pytest.approx(final_value("alpha", "good", 1))],
    }
    assert run["step_3"]["step_count"] == 3000
    assert run["absolute_metrics"] == {"return": [pytest.approx(final_value("alpha", "good", 1))]}


def test_default_metric_falls_back_to_train_return(store):
    out = _compare(store, "--experiment", "train-only")
    assert "`train/return_mean`" in (out / "summary.md").read_text()
    table = pd.read_csv(out / "tasks" / "alpha" / "final_values.csv").set_index("group")
    assert table.loc["good", "mean"] == pytest.approx(_finals("alpha", "good").mean())
    out = _compare(store, "--experiment", GRID, "--metric", "train/return_mean", output="train")
    table = pd.read_csv(out / "tasks" / "alpha" / "final_values.csv").set_index("group")
    assert table.loc["good", "mean"] == pytest.approx(_finals("alpha", "good").mean() - 5)


def test_selection_by_filter_status_and_several_group_tags(store):
    selected = "tags.task = 'alpha' and tags.algorithm = 'good'"
    out = _compare(store, "--filter", selected, "--metric", "train/return_mean")
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 10 and set(runs.task) == {"alpha"}  # 5 from the grid, 5 from train-only
    client, summaries = _summary_runs(store)
    assert client.get_experiment(summaries[0].info.experiment_id).name == "compare"  # runs span 2 experiments
    out = _compare(store, "--experiment", GRID, "--include-unfinished", output="all")
    assert len(pd.read_csv(out / "runs.csv")) == 31  # + the RUNNING one
    out = _compare(store, "--experiment", GRID, "--group-by", "algorithm,variant", output="variant")
    assert set(pd.read_csv(out / "runs.csv").group) == {f"{g}/base" for g in GROUPS}


def test_uneven_groups_are_reported_not_fatal(store, capsys):
    out = _compare(store, "--experiment", "uneven")
    err = capsys.readouterr().err
    assert "group short has no run on the task(s) beta" in err
    assert "task alpha: the groups ran different seeds" in err and "seeds 0, 1, 7" in err
    assert "task alpha: the runs end at different frames" in err and "9,000" in err
    assert "fewer than 5 seeds (short: 3)" in err
    assert "the aggregates leave out the task(s) beta" in err
    aggregate = pd.read_csv(out / "aggregate.csv")
    assert set(aggregate.group) == {"full", "short"} and set(aggregate.n_tasks) == {1}
    table = pd.read_csv(out / "tasks" / "alpha" / "final_values.csv").set_index("group")
    assert table.loc["short", "n_seeds"] == 3 and table.loc["short", "frames_max"] == 9000


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--experiment", "nope"], ["--experiment nope: no such experiment", "grid-a, train-only, uneven"]),
        (["--grid", "nope"], ["--grid nope: no grid of that name", "Grids there: grid-a"]),
        (
            ["--experiment", GRID, "--metric", "eval/nope"],
            ["--metric eval/nope", "eval/return_mean, train/return_mean"],
        ),
        (["--filter", "tags.task = 'gamma'"], ["no FINISHED run matches filter \"tags.task = 'gamma'\""]),
        (["--filter", "tags.task === 'x'"], ["is not a valid MLflow search filter"]),
        (["--experiment", GRID, "--group-by", "nope"], ["has the tags task and nope (--group-by)"]),
        ([], ["compare needs runs: pass --experiment NAME, --grid NAME or --filter"]),
        (["--experiment", GRID, "--reps", "0"], ["--reps (0) must be at least 1"]),
    ],
)
def test_user_errors_name_the_input_and_what_exists(store, args, expected):
    with pytest.raises(ConfigError) as error:
        main(["--tracking-uri", store, *args])
    for text in expected:
        assert text in str(error.value)
    assert not _summary_runs(store)[1]


def test_missing_sqlite_file_is_an_error_not_a_new_store(tmp_path):
    missing = tmp_path / "absent.db"
    with pytest.raises(ConfigError, match="does not exist"):
        main(["--tracking-uri", f"sqlite:///{missing}", "--experiment", GRID])
    assert not missing.exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_is_one_paragraph(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")  # the probe overrides retries
    with pytest.raises(ConfigError, match="does not answer"):
        main(["--tracking-uri", f"http://127.0.0.1:{_free_port()}", "--experiment", GRID])


def test_the_dispatcher_prints_the_error_and_exits_2(store, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["compare", "--tracking-uri", store, "--experiment", "nope"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("marl_lightning: error: --experiment nope: no such experiment")
