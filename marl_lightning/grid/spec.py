"""The grid file (``conf/grids/*.yaml``): typed, validated, and overridable from the command line.

    python -m marl_lightning grid --config conf/grids/dpo_stochastic_game.yaml [--seeds "[0, 1]"] [--jobs 2]

Every field below is a command-line option too (``--jobs 2``, ``--slurm.partition gpu``); the last value
given wins, as for ``fit``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from jsonargparse import ActionConfigFile, ArgumentParser
from typing_extensions import override

from marl_lightning.core.errors import ConfigError

PROG = "python -m marl_lightning grid"


@dataclass
class Entry:
    """An algorithm or task of the grid under its own label, with settings of its own.

    ``config`` is a config name (``ippo`` is ``conf/ippo.yaml``; a task's ``navigation`` is
    ``conf/env/navigation.yaml``) or a path; ``set`` maps CLI keys to values for this entry's runs only.
    A plain string in the grid file is an entry named after its config.
    """

    label: str
    config: str
    set: dict[str, Any] = field(default_factory=dict)


@dataclass
class SlurmResources:
    """Resources of each task of the grid's SLURM array job (submitit's parameters of the same names)."""

    partition: str | None = None
    timeout_min: int = 240
    cpus_per_task: int = 2
    gpus_per_node: int = 0
    mem_gb: int = 16
    array_parallelism: int = 64  # at most this many of the grid's runs at once
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # any other #SBATCH option
    cluster: str | None = None  # submitit's executor: None picks SLURM where sbatch exists; "local" runs here


@dataclass
class Grid:
    """A grid of runs: every algorithm x task x axis value x seed is one ``fit``.

    Args:
        name: the grid's name: its MLflow experiment and parent run are named after it.
        algorithms: algorithm configs (``mappo``, or ``{label, config, set}`` entries).
        tasks: task configs of ``conf/env/`` (or entries).
        seeds: ``seed_everything`` of the runs.
        with_configs: configs composed after each run's task config (e.g. ``paper/dpo_settings``).
        set: settings for every run, CLI keys to values (``model.total_frames: 150000``).
        axes: settings to sweep, CLI keys to lists of values (``model.init_args.clip_epsilon: [0.1, 0.2]``);
            every combination is a run.
        tracking_uri: the MLflow tracking store of every run (default: ``conf/trainer.yaml``'s, or
            ``MLFLOW_TRACKING_URI``).
        workdir: where the runs' logs and checkpoints go (default ``grids/<name>``).
        launcher: ``local`` (``jobs`` processes at once, here) or ``slurm`` (one array job through submitit).
        jobs: runs at once with the local launcher.
        slurm: resources of the SLURM array job's tasks.
        wait: wait for the SLURM jobs and report them (else submit and return; rerun the grid to collect).
    """

    name: str
    algorithms: list[str | Entry]
    tasks: list[str | Entry] = field(default_factory=lambda: ["navigation"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    with_configs: list[str] = field(default_factory=list)
    set: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    tracking_uri: str | None = None
    workdir: str | None = None
    launcher: Literal["local", "slurm"] = "local"
    jobs: int = 1
    slurm: SlurmResources = field(default_factory=SlurmResources)
    wait: bool = True


class GridArgumentParser(ArgumentParser):
    """Reports a bad grid file or option in one paragraph, naming what the user typed."""

    @override
    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        sys.stderr.write(
            f"marl_lightning grid: error: {message.strip()}\nRun `{PROG} --help` for every field.\n"
        )
        sys.exit(2)


def grid_parser() -> GridArgumentParser:
    parser = GridArgumentParser(
        prog=PROG, description="Run a grid of fits, logged under one MLflow parent run."
    )
    parser.add_argument("--config", action=ActionConfigFile, help="a grid file, e.g. conf/grids/<name>.yaml")
    parser.add_class_arguments(Grid, None)
    parser.add_argument("--dry_run", "--dry-run", action="store_true", help="list the runs, start none")
    return parser


def parse_grid(argv: list[str]) -> tuple[Grid, bool, str]:
    """The grid, whether it is a dry run, and the resolved grid as YAML (stored in the parent run)."""
    parser = grid_parser()
    parsed = parser.parse_args(argv)
    text = parser.dump(parsed, skip_none=False)
    namespace = parser.instantiate(parsed)
    dry_run = namespace.pop("dry_run")
    namespace.pop("config", None)
    grid = Grid(**vars(namespace))
    check_grid(grid)
    return grid, dry_run, text


def check_grid(grid: Grid) -> None:
    """Errors a grid shows before anything runs (configs are checked per run, in ``plan.check_runs``)."""
    for name in ("algorithms", "tasks", "seeds"):
        if not getattr(grid, name):
            raise ConfigError(
                f"grid {grid.name!r}: `{name}` is empty, so the grid has no run. List at least one."
            )
    for key, values in grid.axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"grid {grid.name!r}: axis {key!r} is {values!r}; an axis is a non-empty list of values, "
                f"e.g. `{key}: [0.1, 0.2]` (a single value for every run goes under `set`)."
            )
    if grid.jobs < 1:
        raise ConfigError(f"grid {grid.name!r}: jobs is {grid.jobs}; it must be >= 1 (runs at once).")
    if not grid.name.strip() or "/" in grid.name:
        raise ConfigError(
            f"grid name {grid.name!r}: give a non-empty name without '/' (it names an experiment)."
        )


def entries(items: list[str | Entry]) -> list[Entry]:
    return [Entry(label=_stem(item), config=item) if isinstance(item, str) else item for item in items]


def _stem(config: str) -> str:
    return Path(config).stem


def resolve_config(config: str, folder: Path, what: str) -> Path:
    """``config`` as a path: as given if it exists, else ``<folder>/<config>.yaml``; an unknown one is named
    with the configs that exist."""
    for candidate in (Path(config), folder / config, folder / f"{config}.yaml"):
        if candidate.is_file():
            return candidate.resolve()
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    raise ConfigError(
        f"{what} config {config!r} does not exist (looked for {config}, {folder / config}.yaml). Known "
        f"{what} configs in {folder}: {', '.join(known)}; or give a path to a YAML file."
    )
