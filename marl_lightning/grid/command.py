"""``python -m marl_lightning grid --config conf/grids/<name>.yaml [--dry-run] [--jobs N] [...]``.

Plans every run of the grid, checks them all (configs, keys, values, the launcher) before any starts, skips
runs that FINISHED, resumes unfinished ones from their checkpoints, starts the rest, prints a line per
finished run and a summary; the exit status is 0 only if every run finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

from marl_lightning.cli import default_checkpoint_dir
from marl_lightning.core.errors import ConfigError
from marl_lightning.grid.launchers import Launch, LocalLauncher, SlurmLauncher
from marl_lightning.grid.plan import PlannedRun, check_runs, fit_arguments, plan_runs, python_command
from marl_lightning.grid.spec import Grid, parse_grid
from marl_lightning.grid.tracking import GridTracking
from marl_lightning.safety.stop_signals import INTERRUPTED_EXIT_STATUSES
from marl_lightning.tracking.artifacts import default_tracking_uri
from marl_lightning.tracking.store import local_store_path, open_store, ui_hint

FINISHED = "FINISHED"


def _launcher(grid: Grid, workdir: Path) -> LocalLauncher | SlurmLauncher:
    if grid.launcher == "slurm":
        return SlurmLauncher(grid.slurm, workdir / "slurm", grid.name, wait=grid.wait)
    return LocalLauncher(grid.jobs)


def _checkpoint(grid: Grid, run: PlannedRun) -> Path:
    return Path(default_checkpoint_dir(grid.name, run.name)) / "last.ckpt"


def _state(grid: Grid, run: PlannedRun, children: dict) -> str:
    child = children.get(run.name)
    if child is not None and child.info.status == FINISHED:
        return "finished"
    return "resume" if _checkpoint(grid, run).is_file() else "new"


@contextlib.contextmanager
def _only_instance(grid: Grid, workdir: Path) -> Iterator[None]:
    """Refuse to run a grid that another ``grid`` command is running (both would start the same fits)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "grid.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"grid {grid.name!r} is already running from this folder (its lock {workdir / 'grid.lock'} "
                "is held). Wait for it, or stop it (Ctrl-C) and rerun: finished runs are kept."
            ) from None
        yield


def main(argv: list[str]) -> int:
    grid, dry_run, grid_text = parse_grid(argv)
    runs = plan_runs(grid)
    tracking_uri = grid.tracking_uri or default_tracking_uri()
    workdir = Path(grid.workdir or Path("grids") / grid.name)
    launcher = _launcher(grid, workdir)
    check_runs(runs)
    local_store = local_store_path(tracking_uri)
    store_exists = local_store is None or local_store.exists()
    # A dry run creates no store; a real one creates it, or checks that the server answers.
    client = open_store(tracking_uri, must_exist=False) if store_exists or not dry_run else None
    tracking = GridTracking(client, grid.name) if client is not None else None
    if dry_run:
        return _dry_run(grid, runs, launcher, tracking, tracking_uri)
    assert tracking is not None
    with _only_instance(grid, workdir):
        return _run(grid, runs, launcher, tracking, grid_text, workdir, tracking_uri)


def _states(grid: Grid, runs: list[PlannedRun], tracking: GridTracking | None) -> dict[str, str]:
    """Each run's state: ``finished`` (skipped), ``resume`` (from its checkpoint) or ``new``."""
    parent = tracking.parent() if tracking is not None else None
    children = tracking.children(parent.info.run_id) if tracking is not None and parent else {}
    return {run.name: _state(grid, run, children) for run in runs}


def _dry_run(
    grid: Grid,
    runs: list[PlannedRun],
    launcher: LocalLauncher | SlurmLauncher,
    tracking: GridTracking | None,
    tracking_uri: str,
) -> int:
    states = _states(grid, runs, tracking)
    print(f"grid {grid.name}: {len(runs)} runs ({launcher.describe()}), MLflow {tracking_uri}")
    for run in runs:
        ckpt = ["--ckpt_path", str(_checkpoint(grid, run))] if states[run.name] == "resume" else []
        command = python_command([*fit_arguments(run, grid.name, None, tracking_uri), *ckpt])
        print(f"  {states[run.name]:>8}  {run.name}\n            {shlex.join(command)}")
    return 0


def _run(
    grid: Grid,
    runs: list[PlannedRun],
    launcher: LocalLauncher | SlurmLauncher,
    tracking: GridTracking,
    grid_text: str,
    workdir: Path,
    tracking_uri: str,
) -> int:
    states = _states(grid, runs, tracking)
    parent_id = tracking.start_parent(grid_text)
    children = tracking.children(parent_id)
    to_start = [run for run in runs if states[run.name] != "finished"]
    print(
        f"grid {grid.name}: {len(to_start)} of {len(runs)} runs to start ({launcher.describe()}); "
        f"logs in {workdir / 'logs'}; MLflow {tracking_uri}, experiment {grid.name}",
        flush=True,
    )
    for run in runs:
        if states[run.name] == "finished":
            print(f"skip {run.name}: FINISHED earlier", flush=True)
        elif states[run.name] == "new" and run.name in children:  # an earlier try left no checkpoint
            tracking.client.delete_run(children[run.name].info.run_id)
    launches = []
    for run in to_start:
        ckpt = ["--ckpt_path", str(_checkpoint(grid, run))] if states[run.name] == "resume" else []
        arguments = [*fit_arguments(run, grid.name, parent_id, tracking_uri), *ckpt]
        log = workdir / "logs" / f"{run.name}.log"
        launches.append(Launch(run.name, python_command(arguments), str(Path.cwd()), log))
    planned = {run.name: run for run in runs}

    start = time.perf_counter()
    outcomes: dict[str, str] = {}

    def on_done(launch: Launch, exit_status: int, wall: float) -> None:
        run = tracking.children(parent_id).get(launch.name)
        status = run.info.status if run is not None else "FAILED"
        if exit_status != 0:
            status = "KILLED" if exit_status < 0 or exit_status in INTERRUPTED_EXIT_STATUSES else "FAILED"
            tracking.record_failure(planned[launch.name], parent_id, launch.log, status)
        elif status != FINISHED:  # the fit exited 0 without finishing its run (it should not)
            status = "FAILED"
            tracking.record_failure(planned[launch.name], parent_id, launch.log, status)
        outcomes[launch.name] = status
        final = tracking.final_return(run) if run is not None and status == FINISHED else None
        value = f"{final[0]} {final[1]:.4g}" if final else "no return logged"
        done = len(outcomes)
        print(f"[{done}/{len(launches)}] {launch.name}: {status}, {value}, {wall:.0f} s", flush=True)

    try:
        if launches:
            launcher.launch(launches, on_done)
    except KeyboardInterrupt:
        tracking.finish_parent(parent_id, "KILLED", {})
        print(f"grid {grid.name}: interrupted; rerun the same command to resume it.")
        return 130
    if isinstance(launcher, SlurmLauncher) and not launcher.wait:
        tracking.client.update_run(parent_id, status="RUNNING")
        print("submitted; rerun the same command to report the runs and resubmit unfinished ones.")
        return 0
    return _summary(grid, runs, states, outcomes, launches, tracking, parent_id, time.perf_counter() - start)


def _summary(
    grid: Grid,
    runs: list[PlannedRun],
    states: dict[str, str],
    outcomes: dict[str, str],
    launches: list[Launch],
    tracking: GridTracking,
    parent_id: str,
    wall: float,
) -> int:
    skipped = sum(state == "finished" for state in states.values())
    finished = sum(status == FINISHED for status in outcomes.values())
    failed = [launch for launch in launches if outcomes.get(launch.name, "FAILED") != FINISHED]
    print(
        f"grid {grid.name}: {finished} finished, {skipped} skipped (finished earlier), {len(failed)} failed "
        f"or killed, of {len(runs)} runs; {wall:.0f} s in all (parent run {parent_id})"
    )
    for launch in failed:
        print(f"  {outcomes.get(launch.name, 'FAILED')}: {launch.name}: log {launch.log}")
    tracking.finish_parent(
        parent_id,
        "FAILED" if failed else FINISHED,
        {"runs": len(runs), "finished": finished + skipped, "failed": len(failed), "wall_s": wall},
    )
    experiment_id = tracking.experiment_id(create=False)
    print(
        f"curves of every run: {ui_hint(tracking.client.tracking_uri, experiment_id)} (Group by: algorithm)"
    )
    if failed:
        print(
            f"rerun `python -m marl_lightning grid ...` with the same arguments to retry the {len(failed)} "
            "failed runs (finished ones are skipped)."
        )
    return 1 if failed else 0
