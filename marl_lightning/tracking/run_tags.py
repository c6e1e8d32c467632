"""The tags every MLflow run of a fit carries, so that runs compare (``compare``) and group (MLflow's UI).

Grid runs get ``algorithm`` and ``task`` from their grid entry's label (``conf/grids/*.yaml``), plus
``grid``, ``grid.run`` and MLflow's own ``mlflow.parentRunId``; a plain ``fit`` tags its algorithm module's
label and its task's name. Tags given by whoever launched the fit are never overwritten.
"""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from importlib import metadata

from marl_lightning.core.paths import REPO

ALGORITHM = "algorithm"
TASK = "task"
N_AGENTS = "n_agents"
SEED = "seed"
STAGE = "stage"  # the subcommand that made the run: fit, validate or test (compare reads only fit runs)
GRID = "grid"  # the grid's name (its MLflow experiment's name too)
GRID_RUN = "grid.run"  # the run's name within its grid: <algorithm>-<task>[-<axis values>]-seed<seed>
GRID_ROLE = "grid.role"  # "parent" on a grid's parent run, "summary" on a comparison's summary run
PARENT = "mlflow.parentRunId"  # MLflow's own parent/child link (the UI nests children under it)
VARIANT = "variant"  # the grid's override-axis values of the run, "" when it has none
# Reference returns for normalised scores (``compare``): known to some tasks (EnvFactory.reference_returns).
TASK_OPTIMUM = "task.optimum"
TASK_RANDOM = "task.random_return"
GIT_COMMIT = "git.commit"
GIT_DIRTY = "git.dirty"
PACKAGES = ("marl_lightning", "torch", "torchrl", "tensordict", "vmas", "lightning", "mlflow")


def version_tags() -> dict[str, str]:
    """``version.<package>`` of the packages a result depends on, and Python's."""
    tags = {"version.python": platform.python_version()}
    for package in PACKAGES:
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"version.{package}"] = "not installed"
    return tags


@functools.cache
def git_tags() -> dict[str, str]:
    """The commit of the code when it runs from a git checkout, and whether the checkout had changes."""
    try:
        commit = _git("rev-parse", "HEAD")
        changes = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return {}  # an installed package, or no git
    return {GIT_COMMIT: commit, GIT_DIRTY: "true" if changes else "false"}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout.strip()


def host_tags() -> dict[str, str]:
    return {"host": socket.gethostname()}


def fit_tags(
    stage: str,
    algorithm: str,
    task: str,
    n_agents: int,
    seed: int | None,
    reference_returns: dict[str, float],
    device: str,
    strategy: str,
    world_size: int,
) -> dict[str, str]:
    """Every tag of a run of ``fit``, ``validate`` or ``test`` (``stage``; the CLI calls it once the
    trainer, model and task exist)."""
    tags = {
        STAGE: stage,
        ALGORITHM: algorithm,
        TASK: task,
        N_AGENTS: str(n_agents),
        SEED: str(seed),
        "device": device,
        "strategy": strategy,
        "world_size": str(world_size),
        **version_tags(),
        **git_tags(),
        **host_tags(),
    }
    if "optimum" in reference_returns:
        tags[TASK_OPTIMUM] = repr(float(reference_returns["optimum"]))
    if "random" in reference_returns:
        tags[TASK_RANDOM] = repr(float(reference_returns["random"]))
    return tags
