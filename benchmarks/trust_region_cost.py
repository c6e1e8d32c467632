"""What the trust-region diagnostics add to an iteration, at the benchmark config (MAPPO, VMAS navigation,
60 envs x 100 steps, 10 epochs of minibatches of 400, 256x256, shared parameters).

Usage: python benchmarks/trust_region_cost.py [--repeats 5]
In one process: collects one iteration with the policy, then times, alternately and ``--repeats`` times,
(a) a whole iteration as ``training_step`` runs it (collection + advantages + optimisation +
statistics) without the diagnostics and (b) the diagnostics' extra work: ``iteration_statistics`` with
``trust_region_stats`` on minus off (D_TV, clip fraction, joint ratio over the iteration) plus the
monitor's per-iteration bookkeeping. The per-epoch ratio min/max are computed inside the loss for every
algorithm and are part of (a). Prints medians and the ratio (b)/(a), and the
whole after-update statistics pass with the monitor on, relative to (a). The figures drawn once at the end of
a fit are timed separately.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from callbacks import TrustRegionMonitor
from marl_lightning.cli import MarlCLI
from marl_lightning.data.team_signals import expand_team_signals

ARGS = [
    "--config", "conf/mappo.yaml", "--data.num_envs", "60", "--data.frames_per_batch", "6000",
    "--model.num_epochs", "10", "--model.minibatch_size", "400", "--trainer.logger", "false",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cli = MarlCLI(args=ARGS, run=False)
    model, factory = cli.model, cli.datamodule.env_factory
    optimizer = model.configure_optimizers()
    model.optimizers = lambda: SimpleNamespace(optimizer=optimizer)
    env = factory.make_transformed(60, "cpu", seed=0)
    monitor = TrustRegionMonitor(draw_at_end=False)

    iteration_s, extra_s, full_s = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with torch.no_grad():
            batch = expand_team_signals(env.rollout(100, model.policy, break_when_any_done=False), 3)
        model.compute_advantages(batch)
        flat = model.training_batch(batch)
        epoch_stats = model.optimise(flat)
        model.trust_region_stats = False
        model.iteration_statistics(flat)
        iteration_s.append(time.perf_counter() - start)

        start = time.perf_counter()
        model.trust_region_stats = True
        outputs = {**model.iteration_statistics(flat), **epoch_stats}
        monitor.on_train_batch_end(None, model, outputs, None, 0)
        with_stats = time.perf_counter() - start
        full_s.append(with_stats)
        start = time.perf_counter()
        model.trust_region_stats = False
        model.iteration_statistics(flat)
        without = time.perf_counter() - start
        extra_s.append(max(with_stats - without, 0.0))

    start = time.perf_counter()
    monitor._draw_ratio_range(Path(tempfile.gettempdir()) / "ratio_range.png")
    monitor._draw_tv_cdf(Path(tempfile.gettempdir()) / "tv_cdf.png")
    draw_s = time.perf_counter() - start
    it, extra = statistics.median(iteration_s), statistics.median(extra_s)
    print(f"iteration without diagnostics: median {it:.3f} s over {args.repeats}")
    print(f"diagnostics' extra work per iteration: median {extra * 1000:.1f} ms")
    print(f"diagnostics add {100 * extra / it:.2f}% to an iteration (target: under 10%)")
    full = statistics.median(full_s)
    print(f"all after-update statistics with the monitor on (exact KL, entropy, D_TV, joint "
          f"ratio, bookkeeping): {full * 1000:.1f} ms = {100 * full / it:.2f}% of an iteration")
    print(f"drawing both figures once at the end of a fit: {draw_s:.2f} s")


if __name__ == "__main__":
    main()
