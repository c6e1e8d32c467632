"""Frames/s of every algorithm on navigation and on the stochastic game, in one table.

Usage: python benchmarks/algorithm_speeds.py [--iterations 4] [--only mappo ippo] [--tasks navigation]
    [--scale-config conf/gpu/envs_4096.yaml]
Each cell is one fresh ``python -m marl_lightning fit`` (``throughput.our_run``: the anchor settings of
``benchmarks/speed_mappo.py`` with ``conf/<algorithm>.yaml`` as the config, then the task's env config; no
logging, no checkpoints, no callbacks but ``callbacks.IterationTimes`` and those an algorithm needs: DPO's
``AdaptiveBeta``). It prints the steady state (the
median iteration after the first) and its split, and each algorithm's time per iteration against MAPPO's on
the same task. ``--scale-config`` composes a scale file after the task's (``conf/gpu/envs_4096.yaml``: every
algorithm on the GPU at 4,096 envs). Run it on an idle machine: the fits run one after another.
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


def frames_per_iteration(*configs: str | None) -> int:
    """Frames per iteration: the last of these config files to set ``data.frames_per_batch``, else the
    anchor's 6,000."""
    frames = 6000
    for config in (c for c in configs if c is not None):
        data = yaml.safe_load((ROOT / config).read_text()).get("data", {})
        frames = int(data.get("frames_per_batch", frames))
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--only", nargs="*", default=list(ALGORITHMS))
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--scale-config", default=None, help="a config composed after the task's")
    options = parser.parse_args()
    print("| algorithm | task | frames/iteration | iteration s | frames/s | collect s | advantages s | "
          "update s | statistics s | × MAPPO's time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task in options.tasks:
        env_config = TASKS[task]
        per_iteration = frames_per_iteration(env_config, options.scale_config)
        task_args = ["--config", env_config] if env_config else []
        task_args += ["--config", options.scale_config] if options.scale_config else []
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
