"""Cost of the gradient all-reduce after every backward pass, on a real process group.

Usage: python benchmarks/allreduce_cost.py [--config conf/mappo.yaml] [--backend gloo|nccl] [--calls 200]

Two processes (``torch.multiprocessing``, one thread each on CPU; one GPU each with ``nccl``, which needs
two GPUs) build the config's module at the anchor settings of ``benchmarks/speed_mappo.py``, fill every
gradient, and time the ways to average them over the ranks:

- ``flat``: ``marl_lightning.launch.distributed.all_reduce_gradients``, what the update does: every gradient
  copied into one buffer, one collective, copied back;
- ``per_tensor``: one collective per parameter (what a naive loop does);
- ``overlapped``: one asynchronous collective per parameter, all in flight at once, then waited for
  (what overlapping the reduction with the backward pass, as DDP's hooks do, would issue at best).

It prints milliseconds per call (median over ``--calls``) and what that costs an iteration of the anchor
(150 backward passes) next to the update's own time (``perf/optimise_s``, ~1.8 s on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_mappo import ARGS  # noqa: E402 - the anchor settings

STEPS_PER_ITERATION = 150  # 10 epochs x 15 minibatches of 400


def _module_parameters(config: str) -> list[torch.Tensor]:
    from marl_lightning.cli import MarlCLI

    args = list(ARGS)
    args[args.index("--config") + 1] = config
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = MarlCLI(args=args, run=False)
    finally:
        sys.argv = argv
    return [p for p in cli.model.parameters() if p.requires_grad]


def _worker(rank: int, world: int, init_file: str, config: str, backend: str, calls: int, out: dict) -> None:
    torch.set_num_threads(1)
    device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    from marl_lightning.launch.distributed import all_reduce_gradients

    parameters = [p.to(device) for p in _module_parameters(config)]
    for p in parameters:
        p.grad = torch.randn_like(p)

    def per_tensor() -> None:
        for p in parameters:
            dist.all_reduce(p.grad)
            p.grad /= world

    def overlapped() -> None:
        handles = [dist.all_reduce(p.grad, async_op=True) for p in parameters]
        for handle in handles:
            handle.wait()
        for p in parameters:
            p.grad /= world

    ways = {"flat": lambda: all_reduce_gradients(parameters), "per_tensor": per_tensor,
            "overlapped": overlapped}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(calls):
        for name, way in ways.items():  # interleaved
            dist.barrier()
            start = time.perf_counter()
            way()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    if rank == 0:
        out.update({name: statistics.median(t[5:]) for name, t in times.items()})
        out["numel"] = sum(p.numel() for p in parameters)
        out["tensors"] = len(parameters)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="conf/mappo.yaml")
    parser.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as folder, mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, f"{folder}/init", options.config, options.backend, options.calls, out),
                 nprocs=2, join=True)
        out = dict(out)
    print(f"{options.backend}, 2 ranks: {out['tensors']} gradient tensors, {out['numel']:,} floats "
          f"({out['numel'] * 4 / 2**20:.2f} MiB)")
    for name in ("flat", "per_tensor", "overlapped"):
        ms = out[name] * 1e3
        print(f"{name:10s} {ms:7.3f} ms a call, {ms * STEPS_PER_ITERATION / 1e3:6.3f} s an anchor iteration "
              f"({STEPS_PER_ITERATION} backward passes)")


if __name__ == "__main__":
    main()
