"""Throughput of MAPPO on VMAS navigation (3 agents) at BenchMARL's anchor settings.

60 envs x 100 steps = 6,000 frames per iteration, 10 epochs of minibatches of 400, 256x256 actor and
critic with shared parameters, CPU, no evaluation, no logging, no checkpoints, 60,000 frames.

Usage: python benchmarks/speed_mappo.py [--frames 60000] [--runs 3]
Each run is a fresh ``python -m marl_lightning fit`` process timed from launch to exit (what
``../shared/bench/benchmarl_anchor.sh`` measures for BenchMARL), so imports and set-up count for both.
Prints one line per run and the median; pass ``--benchmarl-wall S`` (the anchor's median wall seconds,
measured in the same sitting) to print the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

ARGS = [
    "--config", "conf/mappo.yaml",
    "--data.num_envs", "60", "--data.frames_per_batch", "6000",
    "--model.num_epochs", "10", "--model.minibatch_size", "400",
    "--model.actor_cells", "[256, 256]", "--model.critic_cells", "[256, 256]",
    "--model.share_actor_params", "true", "--model.share_critic_params", "true",
    "--trainer.logger", "false", "--trainer.callbacks", "null", "--trainer.enable_checkpointing", "false",
    "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--benchmarl-wall", type=float, default=None)
    args = parser.parse_args()
    walls = []
    for seed in range(1, args.runs + 1):
        cmd = [sys.executable, "-m", "marl_lightning", "fit", *ARGS,
               "--model.total_frames", str(args.frames), "--seed_everything", str(seed)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode:
            sys.exit(f"run failed:\n{proc.stderr[-3000:]}")
        walls.append(wall)
        print(f"marl_lightning wall_s={wall:.2f} frames={args.frames} frames_per_s={args.frames / wall:.0f}",
              flush=True)
    median = statistics.median(walls)
    print(f"marl_lightning median wall_s={median:.2f} frames_per_s={args.frames / median:.0f}")
    if args.benchmarl_wall:
        print(f"speed-up over BenchMARL: {args.benchmarl_wall / median:.2f}x")


if __name__ == "__main__":
    main()
