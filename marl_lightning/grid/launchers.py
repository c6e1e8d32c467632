"""How a grid's fits are started: here, ``jobs`` processes at once; or as one SLURM array job (submitit)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from marl_lightning.core.errors import ConfigError
from marl_lightning.grid.spec import SlurmResources


@dataclass(frozen=True)
class Launch:
    """One fit to start: its command line, the folder it runs in and the file its output goes to."""

    name: str
    command: list[str]
    cwd: str
    log: Path


# (launch, exit status, wall seconds) -> None, called as each fit ends (in the launching process).
OnDone = Callable[[Launch, int, float], None]
POLL_S = 0.2  # how often the local launcher looks at a recorded SIGINT while its fits run


def run_logged(
    command: list[str],
    cwd: str,
    log: str,
    threads: int | None = None,
    started: Callable[[subprocess.Popen], None] | None = None,
) -> tuple[int, float]:
    """Run ``command`` with its output appended to ``log``; (exit status, wall seconds). Module level so that
    submitit can pickle it onto a SLURM node. ``threads`` sets ``OMP_NUM_THREADS`` (torch's intra-op threads)
    unless the environment already does; ``started`` is given the process once it runs."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        with subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT) as process:
            if started is not None:
                started(process)
            status = process.wait()
    return status, time.perf_counter() - start


class LocalLauncher:
    """``jobs`` fits at once, each in its own process on this machine.

    Each fit gets ``cores // jobs`` torch threads (``OMP_NUM_THREADS``, unless set): PyTorch processes that
    each use every core slow each other down many times over.
    """

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = jobs
        self.threads = max(1, (os.cpu_count() or 1) // jobs)

    def describe(self) -> str:
        return f"local, {self.jobs} at once, {self.threads} torch thread(s) each"

    def launch(self, launches: list[Launch], on_done: OnDone) -> None:
        """Run the fits; on Ctrl-C (or SIGINT to the grid alone) no further fit starts, the running ones get
        SIGINT too (each ends KILLED after its last checkpoint) and the interrupt goes on to the caller.

        SIGINT is recorded by a handler of its own, which the waiting loop reads every
        :data:`POLL_S`: the kernel may deliver the signal to any thread (a worker blocked in ``wait``), and
        Python's KeyboardInterrupt then waits for the main thread's next bytecode, which a blocking wait
        for the fits postpones until one ends (a grid under load went on to its next fit so).
        """
        running: list[subprocess.Popen] = []
        interrupted = threading.Event()
        installed = threading.current_thread() is threading.main_thread()  # (Python's rule for handlers)
        if installed:
            previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            futures = {
                pool.submit(run_logged, x.command, x.cwd, str(x.log), self.threads, running.append): x
                for x in launches
            }
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                if interrupted.is_set():
                    raise KeyboardInterrupt
                for future in done:
                    status, wall = future.result()
                    on_done(futures[future], status, wall)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            for process in running:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            for process in running:
                process.wait()
            raise
        finally:
            if installed:
                signal.signal(signal.SIGINT, previous)
            pool.shutdown(wait=True)


class SlurmLauncher:
    """One SLURM array job, one task per fit, through submitit (``slurm`` resources of the grid file).

    ``cluster: local`` runs the same jobs through submitit's local executor (tests, a machine without
    SLURM). With ``wait: false`` the command returns once the array is submitted; rerunning the grid later
    reports the finished runs and resubmits the rest.
    """

    def __init__(self, resources: SlurmResources, folder: Path, grid_name: str, wait: bool = True) -> None:
        try:
            import submitit
        except ImportError:
            raise ConfigError(
                "launcher 'slurm' needs submitit, which is not installed. Install it with "
                '`pip install submitit` (or `pip install -e ".[slurm]"`), or use `--launcher local`.'
            ) from None
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=resources.cluster)
        parameters = {
            "name": grid_name,
            "timeout_min": resources.timeout_min,
            "cpus_per_task": resources.cpus_per_task,
            "mem_gb": resources.mem_gb,
        }
        if self.executor.cluster == "slurm":
            parameters |= {
                "slurm_partition": resources.partition,
                "slurm_array_parallelism": resources.array_parallelism,
                "slurm_additional_parameters": resources.additional_parameters,
                "gpus_per_node": resources.gpus_per_node,
            }
        self.executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
        self.wait = wait

    def describe(self) -> str:
        return f"submitit ({self.executor.cluster})"

    def launch(self, launches: list[Launch], on_done: OnDone) -> None:
        import submitit

        jobs = self.executor.map_array(
            run_logged,
            [x.command for x in launches],
            [x.cwd for x in launches],
            [str(x.log) for x in launches],
        )
        by_job = {job.job_id: launch for job, launch in zip(jobs, launches, strict=True)}
        runs = f"{len(jobs)} run{'s' * (len(jobs) != 1)}"
        print(f"submitted {runs} as {self.describe()} job {jobs[0].job_id.split('_')[0]}", flush=True)
        if not self.wait:
            return
        for job in submitit.helpers.as_completed(jobs):
            launch = by_job[job.job_id]
            try:
                status, wall = job.result()
            except Exception as error:  # the task died (preempted, timed out, node failure)
                with launch.log.open("a") as out:
                    out.write(f"\nsubmitit: the job {job.job_id} failed: {error}\n")
                status, wall = 1, float("nan")
            on_done(launch, status, wall)
