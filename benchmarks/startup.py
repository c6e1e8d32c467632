"""Start-up: ``python -m marl_lightning --help``, and a fit from its launch to its first iteration.

Usage: python benchmarks/startup.py [--runs 3]

Each figure is the median of ``--runs`` fresh processes, timed from launch:
- ``help_s``: ``python -m marl_lightning --help`` to its exit;
- ``fit_to_first_iteration_s``: ``fit`` at the anchor settings (``benchmarks/speed_mappo.py``: MAPPO,
  VMAS navigation, 60 envs x 100 steps, no logger, no checkpoints) from launch to the start of its first
  iteration (imports, parsing, env, networks, collector: what a user waits for before training begins);
- ``fit_to_first_iteration_end_s``: the same to the end of the first iteration (its 6,000 frames collected
  and the update done).
The fit carries ``callbacks.IterationTimes``; its first line's wall-clock end (``unix_s``) minus the launch
gives the end, less the iteration's own ``wall_s`` the start. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_mappo import ARGS  # noqa: E402 - the anchor settings

ROOT = Path(__file__).resolve().parents[1]


def help_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "marl_lightning", "--help"], cwd=ROOT, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def fit_seconds(seed: int) -> tuple[float, float]:
    """(launch to the first iteration's start, launch to its end) of one fit of one iteration."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "iterations.jsonl"
        timer = json.dumps([{"class_path": "callbacks.IterationTimes", "init_args": {"path": str(path)}}])
        cmd = [sys.executable, "-m", "marl_lightning", "fit", *ARGS, "--trainer.callbacks", timer,
               "--model.total_frames", "6000", "--seed_everything", str(seed)]
        launch = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"fit failed:\n{proc.stderr[-3000:]}")
        first = json.loads(path.read_text().splitlines()[0])
    end = first["unix_s"] - launch
    return end - first["wall_s"], end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    helps, starts, ends = [], [], []
    for run in range(args.runs):  # interleaved
        helps.append(help_seconds())
        start, end = fit_seconds(seed=run)
        starts.append(start)
        ends.append(end)
        print(f"run {run}: help_s={helps[-1]:.2f} fit_to_first_iteration_s={start:.2f} "
              f"fit_to_first_iteration_end_s={end:.2f}", flush=True)
    print(f"median of {args.runs}: help_s={statistics.median(helps):.2f} "
          f"fit_to_first_iteration_s={statistics.median(starts):.2f} "
          f"fit_to_first_iteration_end_s={statistics.median(ends):.2f}")


if __name__ == "__main__":
    main()
