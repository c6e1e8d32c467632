"""Frames/s of every algorithm on navigation and on the stochastic game, in one table.

Usage: python benchmarks/algorithm_speeds.py [--iterations 4] [--only mappo ippo] [--tasks navigation]
Each cell is one fresh ``python -m marl_lightning fit`` (``throughput.our_run``: the anchor settings of
``benchmarks/speed_mappo.py`` with ``conf/<algorithm>.yaml`` as the config, then the task's env config; no
logging, no checkpoints, no callbacks but ``callbacks.IterationTimes`` and those an algorithm needs: DPO's
``AdaptiveBeta``). It prints the steady state (the
median iteration after the first) and its split, and each algorithm's time per iteration against MAPPO's on
the same task. Run it on an idle machine: the fits run one after another.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import ROOT, fit_args, our_run, steady_state  # noqa: E402

from callbacks.iteration_times import PARTS  # noqa: E402

ALGORITHMS = ("mappo", "ippo", "dpo", "jrppo", "perla_mappo", "perla_ippo", "seqppo")
NEEDS = {"dpo": [{"class_path": "callbacks.AdaptiveBeta"}]}  # callbacks an algorithm cannot train without
# settings an algorithm cannot train without at the anchor's: agents updated one at a time need own actors
ARGUMENTS = {"seqppo": ["--model.share_actor_params", "false"]}
TASKS = {"navigation": None, "stochastic_game": "conf/env/stochastic_game.yaml"}  # None: the anchor's own


def frames_per_iteration(env_config: str | None) -> int:
    """The task's frames per iteration: its env config's, or the anchor's 6,000."""
    if env_config is None:
        return 6000
    return int(yaml.safe_load((ROOT / env_config).read_text())["data"]["frames_per_batch"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--only", nargs="*", default=list(ALGORITHMS))
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    options = parser.parse_args()
    print("| algorithm | task | frames/iteration | iteration s | frames/s | collect s | advantages s | "
          "update s | statistics s | × MAPPO's time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task in options.tasks:
        env_config = TASKS[task]
        per_iteration = frames_per_iteration(env_config)
        task_args = ["--config", env_config] if env_config else []
        baseline = None
        for algorithm in options.only:
            args = fit_args(f"conf/{algorithm}.yaml", [*ARGUMENTS.get(algorithm, []), *task_args])
            run = our_run(args, per_iteration * options.iterations, seed=1, callbacks=NEEDS.get(algorithm))
            _, iteration_s, split = steady_state([run])
            baseline = iteration_s if algorithm == "mappo" else baseline
            relative = f"{iteration_s / baseline:.2f}" if baseline else "—"
            parts = " | ".join(f"{split[name]:.3f}" for name in PARTS)
            print(f"| {algorithm} | {task} | {per_iteration} | {iteration_s:.3f} "
                  f"| {per_iteration / iteration_s:,.0f} | {parts} | {relative} |", flush=True)


if __name__ == "__main__":
    main()
