"""Random-policy stepping throughput of every task in conf/env/ at its default batch.

Usage: python benchmarks/env_throughput.py [--repeats 3] [--only simple_spread] [--parallel-copies 8]
Prints frames/s (one frame = one step of one env copy) per task. With ``--parallel-copies N``, PettingZoo
tasks are also timed with N copies in SerialEnv and in ParallelEnv (one worker process per copy), the
comparison behind SerialEnv being the default; keep N near the core count (240 worker processes on 2
cores do not finish).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from marl_lightning.cli import MarlCLI

CONF = Path(__file__).resolve().parents[1] / "conf"


def frames_per_s(factory, num_envs: int, steps: int, repeats: int) -> float:
    env = factory.make_transformed(num_envs, "cpu", seed=0)
    env.rollout(2, break_when_any_done=False)  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            env.rollout(steps, break_when_any_done=False)  # random actions from the spec
        rates.append(num_envs * steps / (time.perf_counter() - start))
    env.close()
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=None, help="run only conf/env/<name>.yaml")
    parser.add_argument("--parallel-copies", type=int, default=0)
    args = parser.parse_args()
    for path in sorted((CONF / "env").glob("*.yaml")):
        if args.only and path.stem != args.only:
            continue
        cli = MarlCLI(args=["--config", str(CONF / "mappo.yaml"), "--config", str(path)], run=False)
        data = cli.datamodule
        factory, steps = data.env_factory, data.steps_per_env
        rate = frames_per_s(factory, data.num_envs, steps, args.repeats)
        print(f"{path.stem}: {data.num_envs} envs x {steps} steps: {rate:,.0f} frames/s", flush=True)
        if args.parallel_copies and hasattr(factory, "parallel") and not factory.parallel:
            n = args.parallel_copies
            serial = frames_per_s(factory, n, steps, args.repeats)
            factory.parallel = True
            parallel = frames_per_s(factory, n, steps, args.repeats)
            factory.parallel = False
            line = f"{path.stem} with {n} copies: SerialEnv {serial:,.0f}, ParallelEnv {parallel:,.0f}"
            print(f"{line} frames/s", flush=True)


if __name__ == "__main__":
    main()
