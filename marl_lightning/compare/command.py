"""``python -m marl_lightning compare``: select runs, check them, compute, write, log a summary run, print.

Usage and the definitions of every output: ``docs/comparing.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from marl_lightning.compare import figures, marl_eval, statistics, tables
from marl_lightning.compare.checks import design_warnings
from marl_lightning.compare.normalisation import REFERENCE, Normalisation, normalisation
from marl_lightning.compare.selection import SUMMARY_EXPERIMENT, Selection, select
from marl_lightning.core.errors import ConfigError
from marl_lightning.tracking import run_tags
from marl_lightning.tracking.artifacts import default_tracking_uri
from marl_lightning.tracking.store import open_store, ui_hint

DEFAULT_REPS = 2000
ARTIFACT_FOLDER = "comparison"
PROGRAM = "python -m marl_lightning compare"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Compare groups of MLflow runs of `fit` per task and across tasks (rliable statistics); "
        "see docs/comparing.md.",
    )
    which = p.add_argument_group("which runs (at least one; together they narrow the selection)")
    which.add_argument("--experiment", metavar="NAME", help="the runs of this MLflow experiment")
    which.add_argument("--grid", metavar="NAME", help="the runs of this grid (its parent run's children)")
    which.add_argument(
        "--filter", metavar="FILTER", help="an MLflow search filter, e.g. \"tags.task = 'navigation'\""
    )
    which.add_argument(
        "--include-unfinished", action="store_true", help="also compare runs that are not FINISHED"
    )
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="the MLflow store (default: MLFLOW_TRACKING_URI, "
        "else the logger's tracking_uri in conf/trainer.yaml)",
    )
    p.add_argument(
        "--metric",
        help="the metric to compare (default: eval/return_mean where the runs have it, "
        "else train/return_mean)",
    )
    p.add_argument(
        "--group-by",
        default=run_tags.ALGORITHM,
        metavar="TAGS",
        help="run tag(s), comma-separated, whose values form a group (default: algorithm)",
    )
    p.add_argument(
        "--output", metavar="DIR", help="folder of the results (default: comparisons/<grid or experiment>)"
    )
    p.add_argument(
        "--reps",
        type=int,
        default=DEFAULT_REPS,
        help=f"bootstrap resamples per interval (default: {DEFAULT_REPS})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    p.add_argument(
        "--summary-experiment",
        metavar="NAME",
        help="experiment of the summary run when the runs "
        f"span several experiments (default: {SUMMARY_EXPERIMENT})",
    )
    return p


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "comparison"


def _warn(message: str) -> None:
    print(f"marl_lightning compare: warning: {message}", file=sys.stderr)


@dataclasses.dataclass
class Report:
    output: Path
    files: list[Path]
    summary: str  # Markdown: everything the comparison found
    printed: str  # the part printed to the terminal


def compare(selection: Selection, output: Path, reps: int, seed: int, warnings: list[str]) -> Report:
    """Compute every statistic and write every table, figure and the marl-eval export under ``output``."""
    files: list[Path] = []
    colour = figures.colours(selection.groups)
    metric = selection.metric
    normalisations = {
        task: normalisation(task, [r for r in selection.runs if r.task == task]) for task in selection.tasks
    }
    numeric, display = tables.normalisation_tables(list(normalisations.values()))
    files += tables.write(numeric, display, output / "normalisation")
    sections = [
        f"# Comparison: {selection.name}\n",
        f"{len(selection.runs)} runs, metric `{metric}` (final value = its last logged point), groups by "
        f"`{','.join(selection.group_by)}`: {', '.join(selection.groups)}; "
        f"tasks: {', '.join(selection.tasks)}. "
        f"95% intervals; bootstrap: {reps} resamples, seed {seed}.\n",
    ]
    if warnings:
        sections.append("## Warnings\n\n" + "".join(f"- {w}\n" for w in warnings))
    sections.append("## Normalisation\n\n" + tables.markdown(display))

    finals = statistics.final_values(selection, reps, seed)
    curves = statistics.learning_curves(selection, reps, seed)
    printed = []
    for task in selection.tasks:
        folder = output / "tasks" / _slug(task)
        numeric, display = tables.final_value_tables([r for r in finals if r.task == task], metric)
        files += tables.write(numeric, display, folder / "final_values")
        task_curves = [c for c in curves if c.task == task]
        if task_curves:
            files.append(
                figures.curves(
                    task_curves,
                    colour,
                    f"{task}: {metric}",
                    metric,
                    folder / "learning_curves.png",
                    _references(normalisations[task], metric),
                )
            )
        text = f"## Task {task}: final {metric}\n\n" + tables.markdown(display)
        sections.append(text)
        printed.append(text)

    matrix = statistics.score_matrix(selection, normalisations)
    for note in matrix.notes:
        _warn(note)
    if matrix.notes:
        sections.append("## Aggregates: notes\n\n" + "".join(f"- {n}\n" for n in matrix.notes))
    scores_of = {}
    if matrix.tasks:
        aggregates = statistics.aggregates(matrix, reps, seed)
        numeric, display = tables.aggregate_tables(aggregates, len(matrix.tasks))
        files += tables.write(numeric, display, output / "aggregate")
        files.append(figures.aggregates(aggregates, colour, output / "aggregate.png"))
        text = f"## Across tasks ({', '.join(matrix.tasks)}): normalised final scores\n\n" + tables.markdown(
            display
        )
        sections.append(text)
        printed.append(text)
        improvements = statistics.probabilities_of_improvement(matrix, reps, seed)
        if improvements:
            numeric, display = tables.improvement_tables(improvements)
            files += tables.write(numeric, display, output / "probability_of_improvement")
            files.append(
                figures.improvements(improvements, colour, output / "probability_of_improvement.png")
            )
            sections.append("## Probability of improvement\n\n" + tables.markdown(display))
        profiles = statistics.performance_profiles(matrix, reps, seed)
        files.append(figures.performance_profiles(profiles, colour, output / "performance_profiles.png"))
        efficiency, why_not = statistics.sample_efficiency(matrix, normalisations, reps, seed)
        if efficiency:
            files.append(
                figures.curves(
                    efficiency,
                    colour,
                    f"normalised {metric}, all tasks",
                    "normalised score",
                    output / "sample_efficiency.png",
                )
            )
            files.append(_write_curves(efficiency, output / "sample_efficiency.csv"))
        else:
            _warn(why_not)
            sections.append(f"## Sample efficiency\n\n{why_not}\n")
        for task_runs in matrix.runs.values():
            for task, runs in zip(matrix.tasks, task_runs, strict=True):
                for run in runs:
                    scores_of[run.run_id] = float(normalisations[task](run.final))
    else:
        note = "no task was run by every group: no aggregates across tasks."
        _warn(note)
        sections.append(f"## Across tasks\n\n{note}\n")
    files.append(_write_curves(curves, output / "learning_curves.csv"))
    files.append(_write_runs(selection, normalisations, scores_of, output / "runs.csv"))
    files.append(marl_eval.write(selection, output / "marl_eval.json"))
    summary = "\n".join(sections)
    files.append(output / "summary.md")
    files[-1].write_text(summary)
    return Report(output, files, summary, "\n".join(printed))


def _references(norm: Normalisation, metric: str) -> dict[str, float]:
    """The task's optimum and random-policy return as lines on its return curves (when it knows them)."""
    if norm.method != REFERENCE or "return" not in metric:
        return {}
    return {"optimum (task.optimum)": norm.high, "random policy (task.random_return)": norm.low}


def _write_curves(curves: list[statistics.Curve], path: Path) -> Path:
    columns = ("mean", "mean_low", "mean_high", "iqm", "iqm_low", "iqm_high")
    frames = [
        pd.DataFrame(
            {
                "task": c.task,
                "group": c.group,
                "n_seeds": c.n_seeds,
                "frames": c.frames,
                **{name: getattr(c, name) for name in columns},
            }
        )
        for c in curves
    ]
    (pd.concat(frames) if frames else pd.DataFrame(columns=["task", "group", "frames", *columns])).to_csv(
        path, index=False
    )
    return path


def _write_runs(selection: Selection, normalisations: dict, scores_of: dict[str, float], path: Path) -> Path:
    keys = marl_eval.run_keys(selection)
    rows = [
        {
            "task": r.task,
            "group": r.group,
            "seed": r.seed,
            "run_id": r.run_id,
            "run_name": r.name,
            "final_value": r.final,
            "final_frames": r.final_frames,
            "normalised": float(normalisations[r.task](r.final)),
            "in_aggregates": r.run_id in scores_of,
            "marl_eval_run": keys[r.run_id],
        }
        for task in selection.tasks
        for group in selection.groups
        for r in selection.runs_of(task, group)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def log_summary_run(
    client: MlflowClient, selection: Selection, report: Report, params: dict[str, str]
) -> str:
    """A run tagged ``grid.role=summary`` (child of the grid's parent when selected by grid) holding the
    files under ``comparison/``."""
    experiment_id = selection.experiment_id
    if experiment_id is None:
        name = params.get("summary_experiment") or SUMMARY_EXPERIMENT
        existing = client.get_experiment_by_name(name)
        experiment_id = existing.experiment_id if existing else client.create_experiment(name)
    tags = {run_tags.GRID_ROLE: "summary", "compare.metric": selection.metric}
    if selection.parent_run_id:
        tags[run_tags.PARENT] = selection.parent_run_id
        tags[run_tags.GRID] = selection.name
    run = client.create_run(experiment_id, run_name=f"compare-{selection.name}", tags=tags)
    run_id = run.info.run_id
    try:
        for key, value in params.items():
            if value not in (None, ""):
                client.log_param(run_id, key, value)
        client.log_param(run_id, "n_runs", len(selection.runs))
        for path in report.files:
            relative = path.parent.relative_to(report.output)
            folder = ARTIFACT_FOLDER if relative == Path(".") else f"{ARTIFACT_FOLDER}/{relative.as_posix()}"
            client.log_artifact(run_id, str(path), folder)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    group_by = tuple(tag.strip() for tag in args.group_by.split(",") if tag.strip())
    if not group_by:
        raise ConfigError(
            f"--group-by {args.group_by!r} names no tag. Pass e.g. --group-by algorithm,variant."
        )
    if args.reps < 1:
        raise ConfigError(f"--reps ({args.reps}) must be at least 1; the default is {DEFAULT_REPS}.")
    tracking_uri = args.tracking_uri or default_tracking_uri()
    client = open_store(tracking_uri)
    selection = select(
        client,
        experiment=args.experiment,
        grid=args.grid,
        filter_string=args.filter,
        metric=args.metric,
        group_by=group_by,
        include_unfinished=args.include_unfinished,
        summary_experiment=args.summary_experiment,
    )
    warnings = selection.notes + design_warnings(selection)
    for warning in warnings:
        _warn(warning)
    output = Path(args.output) if args.output else Path("comparisons") / _slug(selection.name)
    with np.errstate(invalid="ignore", divide="ignore"):
        report = compare(selection, output, args.reps, args.seed, warnings)
    params = {
        "experiment": args.experiment,
        "grid": args.grid,
        "filter": args.filter,
        "metric": selection.metric,
        "group_by": ",".join(group_by),
        "reps": str(args.reps),
        "seed": str(args.seed),
        "include_unfinished": str(args.include_unfinished),
        "summary_experiment": args.summary_experiment,
    }
    run_id = log_summary_run(client, selection, report, params)
    print(report.printed)
    print(
        f"Files: {output}/ (summary.md lists everything); logged under {ARTIFACT_FOLDER}/ of the summary run "
        f"{run_id} in {tracking_uri}."
    )
    summary_experiment = client.get_run(run_id).info.experiment_id
    print(f"In MLflow's UI: {ui_hint(tracking_uri, summary_experiment, run_id)}")
    return 0
