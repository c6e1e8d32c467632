"""The grid's MLflow side: one experiment and one parent run per grid, its children, failures recorded."""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from marl_lightning.grid.plan import PlannedRun
from marl_lightning.tracking import run_tags

PARENT_ROLE = "parent"
ERROR_ARTIFACT = "grid/error.log"  # the failed fit's last log lines, in its run
ERROR_LINES = 60
RETURN_METRICS = ("eval/return_mean", "train/return_mean")  # the progress line's "final return"


class GridTracking:
    """The grid's experiment (named after the grid), its parent run and its children in one tracking store."""

    def __init__(self, client: MlflowClient, grid_name: str) -> None:
        self.grid_name = grid_name
        self.client = client

    def experiment_id(self, create: bool) -> str | None:
        experiment = self.client.get_experiment_by_name(self.grid_name)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(self.grid_name) if create else None

    def parent(self) -> Run | None:
        experiment_id = self.experiment_id(create=False)
        if experiment_id is None:
            return None
        found = self.client.search_runs(
            [experiment_id],
            f"tags.`{run_tags.GRID_ROLE}` = '{PARENT_ROLE}' and tags.`{run_tags.GRID}` = '{self.grid_name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return found[0] if found else None

    def start_parent(self, grid_text: str) -> str:
        """The parent run's id (created on the first call, RUNNING again on a rerun); stores the grid file."""
        parent = self.parent()
        if parent is None:
            parent = self.client.create_run(
                self.experiment_id(create=True),
                run_name=self.grid_name,
                tags={run_tags.GRID_ROLE: PARENT_ROLE, run_tags.GRID: self.grid_name, **run_tags.git_tags()},
            )
        else:
            self.client.update_run(parent.info.run_id, status="RUNNING")
        self.client.log_text(parent.info.run_id, grid_text, "grid.yaml")
        return parent.info.run_id

    def children(self, parent_run_id: str | None) -> dict[str, Run]:
        """The newest ``fit`` run of each grid run name under the parent (``validate``/``test`` runs of a
        grid run's checkpoint carry its tags too)."""
        if parent_run_id is None:
            return {}
        experiment_id = self.experiment_id(create=False)
        runs = self.client.search_runs(
            [experiment_id],
            f"tags.`{run_tags.PARENT}` = '{parent_run_id}'",
            order_by=["attributes.start_time ASC"],
            max_results=50_000,
        )
        return {
            run.data.tags[run_tags.GRID_RUN]: run
            for run in runs
            if run_tags.GRID_RUN in run.data.tags and run.data.tags.get(run_tags.STAGE, "fit") == "fit"
        }

    def final_return(self, run: Run) -> tuple[str, float] | None:
        """(metric, value): the run's last evaluated return, else its last training return."""
        for metric in RETURN_METRICS:
            if metric in run.data.metrics:
                return metric, run.data.metrics[metric]
        return None

    def record_failure(self, planned: PlannedRun, parent_run_id: str, log: Path, status: str) -> str:
        """Mark the fit's run ``status`` (FAILED, KILLED) with its log's last lines as an artifact; a fit that
        died before creating its run gets one, so the grid shows every run it tried. Returns the run id."""
        run = self.children(parent_run_id).get(planned.name)
        if run is None:
            run = self.client.create_run(
                self.experiment_id(create=True),
                run_name=planned.name,
                tags={
                    run_tags.PARENT: parent_run_id,
                    run_tags.GRID: self.grid_name,
                    run_tags.GRID_RUN: planned.name,
                    run_tags.ALGORITHM: planned.algorithm,
                    run_tags.TASK: planned.task,
                    run_tags.SEED: str(planned.seed),
                    run_tags.VARIANT: planned.variant,
                },
            )
        run_id = run.info.run_id
        lines = log.read_text(errors="replace").splitlines()[-ERROR_LINES:] if log.is_file() else []
        self.client.log_text(run_id, "\n".join(lines) + "\n", ERROR_ARTIFACT)
        self.client.set_tag(run_id, "grid.log", str(log.resolve()))
        self.client.set_terminated(run_id, status)
        return run_id

    def finish_parent(self, parent_run_id: str, status: str, summary: dict[str, float]) -> None:
        for key, value in summary.items():
            self.client.log_metric(parent_run_id, f"grid/{key}", value)
        self.client.set_terminated(parent_run_id, status)
