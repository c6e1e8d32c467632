"""Where a PettingZoo step goes: mpe2 simple spread alone, inside TorchRL's ``PettingZooWrapper``, inside
ours (``AttributeForwardingPettingZooWrapper``), and batched by ``SerialEnv``; interleaved in one process.

Usage: python benchmarks/pettingzoo_overhead.py [--rounds 8] [--copies 24] [--discrete]
Prints ms per frame (one step of one env copy) for each layer: the median of ``--rounds`` rollouts of 25
steps (one episode), run in turn so that this machine's drift falls on all of them alike, and the ratio of
ours to TorchRL's plain wrapper. Random actions throughout (no policy network).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import mpe2.simple_spread_v3
import torch
from torchrl.envs import SerialEnv
from torchrl.envs.libs.pettingzoo import PettingZooWrapper

from marl_lightning.core import keys
from marl_lightning.envs.pettingzoo import AttributeForwardingPettingZooWrapper

STEPS = 25  # mpe2's max_cycles: one episode


def wrapped(wrapper: type[PettingZooWrapper], continuous: bool) -> PettingZooWrapper:
    raw = mpe2.simple_spread_v3.parallel_env(N=5, max_cycles=STEPS, continuous_actions=continuous)
    return wrapper(raw, group_map={keys.GROUP: list(raw.possible_agents)}, categorical_actions=True,
                   done_on_any=False, use_mask=False, return_state=False)


def mpe2_alone(continuous: bool) -> Callable[[], int]:
    """One episode of the PettingZoo env itself, fixed random actions; returns the frames stepped."""
    env = mpe2.simple_spread_v3.parallel_env(N=5, max_cycles=STEPS, continuous_actions=continuous)
    env.reset(seed=0)
    actions = {agent: env.action_space(agent).sample() for agent in env.agents}

    def episode() -> int:
        env.reset()
        for _ in range(STEPS):
            env.step(actions)
        return STEPS

    return episode


def rollout_of(env, copies: int) -> Callable[[], int]:
    env.set_seed(0)

    def episode() -> int:
        env.rollout(STEPS, break_when_any_done=False)
        return STEPS * copies

    return episode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--copies", type=int, default=24)
    parser.add_argument("--discrete", action="store_true")
    args = parser.parse_args()
    continuous, n = not args.discrete, args.copies
    layers = {
        "mpe2 alone": mpe2_alone(continuous),
        "TorchRL PettingZooWrapper": rollout_of(wrapped(PettingZooWrapper, continuous), 1),
        "ours (attribute forwarding)": rollout_of(
            wrapped(AttributeForwardingPettingZooWrapper, continuous), 1
        ),
        f"SerialEnv({n}) of TorchRL's": rollout_of(
            SerialEnv(n, partial(wrapped, PettingZooWrapper, continuous)), n
        ),
        f"SerialEnv({n}) of ours": rollout_of(
            SerialEnv(n, partial(wrapped, AttributeForwardingPettingZooWrapper, continuous)), n
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in layers}
    with torch.no_grad():
        for episode in layers.values():
            episode()  # warm-up
        for _ in range(args.rounds):
            for name, episode in layers.items():
                start = time.perf_counter()
                frames = episode()
                times[name].append((time.perf_counter() - start) / frames * 1000)
    median = [statistics.median(values) for values in times.values()]
    for name, value in zip(times, median, strict=True):
        print(f"{name}: {value:.3f} ms per frame ({1000 / value:,.0f} frames/s)")
    _, plain, ours, serial_plain, serial_ours = median
    print(f"ours / TorchRL's: one env {ours / plain:.2f}, in SerialEnv({n}) {serial_ours / serial_plain:.2f}")


if __name__ == "__main__":
    main()
