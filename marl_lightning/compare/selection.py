"""MLflow queries → the runs to compare: one metric history per run, with its task, group and seed.

Runs are chosen by experiment, by grid (the children of the grid's parent run) or by any MLflow search
filter, FINISHED ones only unless asked; a grid's parent, earlier summary runs and the runs of ``validate``/
``test`` (tag ``stage``) are never compared.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from marl_lightning.core.errors import ConfigError
from marl_lightning.tracking import run_tags

DEFAULT_METRICS = ("eval/return_mean", "train/return_mean")
SKIPPED_ROLES = ("parent", "summary")
RUN_NAME = "mlflow.runName"
PAGE = 1000
SUMMARY_EXPERIMENT = "compare"  # the summary run's experiment when the runs span several


@dataclasses.dataclass(frozen=True)
class RunHistory:
    """One run's history of the compared metric, sorted by frames (the MLflow step).

    Shapes: ``frames`` and ``values`` are ``[P]``, P the number of logged points.
    """

    run_id: str
    name: str
    experiment_id: str
    task: str
    group: str
    seed: str
    frames: np.ndarray
    values: np.ndarray
    tags: dict[str, str]

    @property
    def final(self) -> float:
        """The metric's last logged point."""
        return float(self.values[-1])

    @property
    def final_frames(self) -> int:
        return int(self.frames[-1])


@dataclasses.dataclass
class Selection:
    """The runs to compare and where their comparison goes."""

    runs: list[RunHistory]
    metric: str
    group_by: tuple[str, ...]
    name: str  # the grid's or experiment's name: names the summary run and the default output folder
    experiment_id: str | None  # where the summary run goes: the runs' experiment, None when they span several
    parent_run_id: str | None  # the grid's parent run, when selected by grid
    notes: list[str]  # what was left out and why

    @property
    def tasks(self) -> list[str]:
        return sorted({run.task for run in self.runs})

    @property
    def groups(self) -> list[str]:
        return sorted({run.group for run in self.runs})

    def runs_of(self, task: str, group: str) -> list[RunHistory]:
        """The runs of one group on one task, in seed order."""
        return sorted((r for r in self.runs if r.task == task and r.group == group), key=seed_order)


def seed_order(run: RunHistory) -> tuple:
    try:
        return (0, int(run.seed), run.run_id)
    except ValueError:
        return (1, run.seed, run.run_id)


def _search(client: MlflowClient, experiment_ids: list[str], query: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, query, ViewType.ACTIVE_ONLY, PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _experiments(client: MlflowClient) -> list:
    experiments, token = [], None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=PAGE, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            return experiments


def _experiment(client: MlflowClient, name: str):
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage != "active":
        names = sorted(e.name for e in _experiments(client))
        raise ConfigError(
            f"--experiment {name}: no such experiment in the tracking store {client.tracking_uri}. It has: "
            f"{', '.join(names) or 'none'}. Pass one of them (names are case-sensitive), or --tracking-uri "
            f"for another store."
        )
    return experiment


def _grid_parent(client: MlflowClient, grid: str, experiment_ids: list[str]):
    parents = _search(client, experiment_ids, f"tags.`{run_tags.GRID_ROLE}` = 'parent'")
    matching = [run for run in parents if run.data.tags.get(run_tags.GRID) == grid]
    if not matching:
        known = sorted({run.data.tags.get(run_tags.GRID, run.info.run_name) for run in parents})
        raise ConfigError(
            f"--grid {grid}: no grid of that name in the tracking store {client.tracking_uri} (a grid is "
            f"a parent run tagged {run_tags.GRID_ROLE}=parent and {run_tags.GRID}=<name>). Grids there: "
            f"{', '.join(known) or 'none'}. Pass one of them, or select runs with --experiment or --filter."
        )
    return max(matching, key=lambda run: run.info.start_time or 0), len(matching)


def _history(client: MlflowClient, run_id: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Frames and values of a metric, one point per step: a step logged twice (an iteration logged again
    after a resume) keeps its latest value."""
    points = sorted(client.get_metric_history(run_id, metric), key=lambda m: (m.step, m.timestamp))
    by_step = {m.step: m.value for m in points}
    frames = np.array(sorted(by_step), dtype=np.int64)
    return frames, np.array([by_step[step] for step in frames], dtype=np.float64)


def select(
    client: MlflowClient,
    *,
    experiment: str | None,
    grid: str | None,
    filter_string: str | None,
    metric: str | None,
    group_by: tuple[str, ...],
    include_unfinished: bool,
    summary_experiment: str | None,
) -> Selection:
    """The runs to compare, each with its history of ``metric`` (default: ``eval/return_mean`` where the
    runs have it, else ``train/return_mean``)."""
    if not (experiment or grid or filter_string):
        raise ConfigError(
            'compare needs runs: pass --experiment NAME, --grid NAME or --filter "<MLflow search filter>" '
            "(e.g. --filter \"tags.task = 'navigation'\")."
        )
    if experiment:
        experiment_ids = [_experiment(client, experiment).experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in _experiments(client)]
    clauses = [] if include_unfinished else ["attributes.status = 'FINISHED'"]
    parent_run_id, notes = None, []
    if grid:
        parent, n_parents = _grid_parent(client, grid, experiment_ids)
        parent_run_id = parent.info.run_id
        experiment_ids = [parent.info.experiment_id]
        clauses.append(f"tags.`{run_tags.PARENT}` = '{parent_run_id}'")
        if n_parents > 1:
            notes.append(
                f"{n_parents} parent runs are named grid {grid}; comparing the children of the "
                f"latest ({parent_run_id})."
            )
    if filter_string:
        clauses.append(f"({filter_string})" if " or " in filter_string.lower() else filter_string)
    query = " and ".join(clauses)
    try:
        found = _search(client, experiment_ids, query)
    except Exception as error:  # noqa: BLE001 - MLflow reports a bad filter as a generic exception
        if not filter_string:
            raise
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(
            f"--filter {filter_string!r} is not a valid MLflow search filter ({reason}). Use MLflow's "
            f"syntax, e.g. \"tags.task = 'navigation' and params.seed_everything != '3'\"; tag names with "
            f"dots need backquotes: \"tags.`grid.run` LIKE 'mappo%'\"."
        ) from None
    found = [
        run
        for run in found
        if run.data.tags.get(run_tags.GRID_ROLE) not in SKIPPED_ROLES
        and run.data.tags.get(run_tags.STAGE, "fit") == "fit"  # not validate/test runs of a checkpoint
    ]
    what = " and ".join(
        part
        for part in (
            f"experiment {experiment}" if experiment else "",
            f"grid {grid}" if grid else "",
            f"filter {filter_string!r}" if filter_string else "",
        )
        if part
    )
    if not found:
        status = "" if include_unfinished else " FINISHED"
        raise ConfigError(
            f"no{status} run matches {what} in the tracking store {client.tracking_uri}. "
            + (
                "Add --include-unfinished to compare runs that are still running, failed or were killed, or "
                if not include_unfinished
                else ""
            )
            + "widen the selection."
        )
    metric = _choose_metric(found, metric, what)
    runs = []
    missing: dict[str, int] = {}
    for run in found:
        tags = run.data.tags
        if metric not in run.data.metrics:
            missing[f"the metric {metric}"] = missing.get(f"the metric {metric}", 0) + 1
            continue
        absent = [tag for tag in (run_tags.TASK, *group_by) if tag not in tags]
        if absent:
            key = f"the tag {absent[0]}"
            missing[key] = missing.get(key, 0) + 1
            continue
        frames, values = _history(client, run.info.run_id, metric)
        runs.append(
            RunHistory(
                run_id=run.info.run_id,
                name=tags.get(RUN_NAME, run.info.run_id),
                experiment_id=run.info.experiment_id,
                task=tags[run_tags.TASK],
                group="/".join(tags[tag] for tag in group_by),
                seed=tags.get(run_tags.SEED, run.info.run_id),
                frames=frames,
                values=values,
                tags=dict(tags),
            )
        )
    for what_missing, count in missing.items():
        notes.append(f"{count} of the {len(found)} selected runs lack {what_missing} and are left out.")
    if not runs:
        present = sorted({tag for run in found for tag in run.data.tags if not tag.startswith("mlflow.")})
        raise ConfigError(
            f"none of the {len(found)} runs of {what} has the tags {run_tags.TASK} and "
            f"{', '.join(group_by)} (--group-by). Their tags: {', '.join(present)}. Pass --group-by with "
            f"tags the runs have."
        )
    experiments = sorted({run.experiment_id for run in runs})
    experiment_id = experiments[0] if len(experiments) == 1 and not summary_experiment else None
    if grid:
        name = grid
    elif experiment:
        name = experiment
    elif experiment_id is not None:
        name = client.get_experiment(experiment_id).name
    else:
        name = summary_experiment or SUMMARY_EXPERIMENT
    return Selection(runs, metric, group_by, name, experiment_id, parent_run_id, notes)


def _choose_metric(found: list, metric: str | None, what: str) -> str:
    present = {name for run in found for name in run.data.metrics}
    if metric is None:
        for candidate in DEFAULT_METRICS:
            if candidate in present:
                return candidate
        requested = " or ".join(DEFAULT_METRICS)
    elif metric in present:
        return metric
    else:
        requested = metric
    raise ConfigError(
        f"--metric {requested}: none of the {len(found)} runs of {what} logged it. They logged: "
        f"{', '.join(sorted(present)) or 'no metric'}. Pass one of them with --metric."
    )
