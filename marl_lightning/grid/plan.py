"""The runs of a grid: names, ``fit`` arguments, and the checks every run passes before any starts."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marl_lightning.core.errors import ConfigError
from marl_lightning.core.paths import CONF
from marl_lightning.grid.spec import Grid, entries, resolve_config
from marl_lightning.tracking import run_tags


@dataclass(frozen=True)
class PlannedRun:
    """One ``fit`` of the grid; ``name`` (unique in it) is ``<algorithm>-<task>[-<variant>]-seed<seed>``."""

    name: str
    algorithm: str
    task: str
    seed: int
    variant: str
    configs: tuple[Path, ...]
    settings: tuple[tuple[str, Any], ...] = field(default=())

    def setting_args(self) -> list[str]:
        """The run's settings as CLI arguments (``--model.total_frames 150000``)."""
        return [arg for key, value in self.settings for arg in (f"--{key}", _cli_value(value))]


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _variant(combination: tuple[tuple[str, Any], ...]) -> str:
    """``clip_epsilon=0.1,lr=0.001``: the axes' last key parts and values."""
    return ",".join(f"{key.rsplit('.', 1)[-1]}={_cli_value(value)}" for key, value in combination)


def plan_runs(grid: Grid) -> list[PlannedRun]:
    """Every algorithm x task x axis combination x seed, in that order; duplicates are refused."""
    algorithms, tasks = entries(grid.algorithms), entries(grid.tasks)
    extra = tuple(resolve_config(config, CONF, "composed") for config in grid.with_configs)
    axes = [[(key, value) for value in values] for key, values in grid.axes.items()]
    runs: list[PlannedRun] = []
    for algorithm, task in itertools.product(algorithms, tasks):
        configs = (
            resolve_config(algorithm.config, CONF, "algorithm"),
            resolve_config(task.config, CONF / "env", "task"),
            *extra,
        )
        for combination in itertools.product(*axes):
            variant = _variant(combination)
            settings = (*grid.set.items(), *task.set.items(), *algorithm.set.items(), *combination)
            for seed in grid.seeds:
                name = "-".join(part for part in (algorithm.label, task.label, variant) if part)
                runs.append(
                    PlannedRun(
                        f"{name}-seed{seed}",
                        algorithm.label,
                        task.label,
                        seed,
                        variant,
                        configs,
                        tuple(settings),
                    )
                )
    _refuse_duplicates(grid, runs)
    return runs


def _refuse_duplicates(grid: Grid, runs: list[PlannedRun]) -> None:
    seen: set[str] = set()
    for run in runs:
        if run.name in seen:
            raise ConfigError(
                f"grid {grid.name!r}: the run {run.name!r} appears twice (the same label, axis value or seed "
                "is listed twice). Give each algorithm/task entry its own `label` and list each seed and "
                "axis value once."
            )
        seen.add(run.name)


def fit_arguments(run: PlannedRun, grid_name: str, parent_run_id: str | None, tracking_uri: str) -> list[str]:
    """The ``fit`` arguments of ``run`` (after ``python -m marl_lightning``), without ``--ckpt_path``; its
    checkpoints go to the CLI's default folder, ``checkpoints/<grid>/<run>``."""
    tags = {
        run_tags.ALGORITHM: run.algorithm,
        run_tags.TASK: run.task,
        run_tags.GRID: grid_name,
        run_tags.GRID_RUN: run.name,
        run_tags.VARIANT: run.variant,
    }
    if parent_run_id is not None:
        tags[run_tags.PARENT] = parent_run_id
    return [
        "fit",
        *(arg for config in run.configs for arg in ("--config", str(config))),
        "--seed_everything",
        str(run.seed),
        *run.setting_args(),
        "--trainer.logger.init_args.tracking_uri",
        tracking_uri,
        "--trainer.logger.init_args.experiment_name",
        grid_name,
        "--trainer.logger.init_args.run_name",
        run.name,
        "--trainer.logger.init_args.tags",
        json.dumps(tags),
        "--trainer.enable_progress_bar",
        "false",
    ]


def check_runs(runs: list[PlannedRun]) -> None:
    """Parse (never run) each distinct configuration with the ``fit`` CLI: an unknown key, a wrong type or a
    bad value is reported for its run before any run starts."""
    from marl_lightning.cli import MarlCLI

    checked: set[tuple] = set()
    for run in runs:
        key = (run.configs, tuple(run.setting_args()))
        if key in checked:
            continue
        checked.add(key)
        args = ["fit", *(a for c in run.configs for a in ("--config", str(c))), *run.setting_args()]
        errors = io.StringIO()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
                MarlCLI(args=[*args, "--print_config"])
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                raise ConfigError(
                    f"grid run {run.name!r} ({' '.join(args[1:])}) is not a valid fit: "
                    f"{_first_error(errors.getvalue())} Fix the grid's entry, `set` or `axes` key (every key "
                    f"is a `fit` option: `python -m marl_lightning fit --config {run.configs[0]} --help`)."
                ) from None


def _first_error(text: str) -> str:
    """The informative lines of a jsonargparse error (its nesting of Union alternatives dropped)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [
        line.removeprefix("marl_lightning: error:").strip() for line in lines if not line.startswith("Run `")
    ]
    useful = [
        line for line in lines if not line.startswith(("Subtypes:", "Errors:", "- Problem", "Does not"))
    ]
    return " ".join(useful[:4] or lines[:4])


def python_command(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "marl_lightning", *arguments]
