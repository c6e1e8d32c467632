"""Where the time of a fit goes: ``fit`` at the anchor settings (``benchmarks/speed_mappo.py``'s) under
cProfile, in this process; prints the functions that take the most time themselves and cumulatively.

Usage: python benchmarks/profile_iteration.py [--frames 30000] [--top 30]
cProfile adds a cost to every Python call, so Python-heavy parts (TensorDict bookkeeping, per-step code)
look larger than they are; compare shares between profiles, and time with ``speed_mappo.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_mappo import ARGS  # noqa: E402 - the same settings as the timed benchmark

from marl_lightning.__main__ import cli_main  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=30_000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    profile = cProfile.Profile()
    profile.enable()
    cli_main(["fit", *ARGS, "--model.total_frames", str(args.frames)])
    profile.disable()
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
