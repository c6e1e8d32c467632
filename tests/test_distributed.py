"""Multi-process training on a real (gloo, CPU) process group."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from marl_lightning.__main__ import cli_main
from marl_lightning.launch.distributed import all_reduce_gradients, broadcast_from_rank_zero, reduce
from tests.conftest import cli_args, only_run


def _collectives(rank: int, world: int, init_file: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        weight = torch.nn.Parameter(torch.full((2, 3), float(rank)))
        bias = torch.nn.Parameter(torch.zeros(3))
        weight.grad = torch.full((2, 3), float(rank + 1))
        bias.grad = torch.arange(3.0) * (rank + 1)
        all_reduce_gradients([weight, bias])
        broadcast_from_rank_zero([weight])
        x = torch.tensor([float(rank), 10.0 * rank])
        results[rank] = {
            "weight_grad": weight.grad.clone(),
            "bias_grad": bias.grad.clone(),
            "weight": weight.detach().clone(),
            "mean": reduce(x, "mean"),
            "sum": reduce(x, "sum"),
            "min": reduce(x, "min"),
            "max": reduce(x, "max"),
        }
    finally:
        dist.destroy_process_group()


def test_gradients_are_averaged_and_parameters_broadcast(tmp_path: Path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_collectives, args=(2, str(tmp_path / "init"), results), nprocs=2, join=True)
        results = dict(results)
    for rank in (0, 1):
        out = results[rank]
        torch.testing.assert_close(out["weight_grad"], torch.full((2, 3), 1.5))
        torch.testing.assert_close(out["bias_grad"], torch.arange(3.0) * 1.5)
        torch.testing.assert_close(out["weight"], torch.zeros(2, 3))  # rank 0's values everywhere
        torch.testing.assert_close(out["mean"], torch.tensor([0.5, 5.0]))
        torch.testing.assert_close(out["sum"], torch.tensor([1.0, 10.0]))
        torch.testing.assert_close(out["min"], torch.tensor([0.0, 0.0]))
        torch.testing.assert_close(out["max"], torch.tensor([1.0, 10.0]))


@pytest.mark.simulator
def test_a_checkpoint_resumes_on_another_number_of_ranks(in_tmp):
    # 1 rank for 2 iterations, resumed on 2 ranks (1 -> 2) by Lightning's own launcher, then on 1 again
    # (2 -> 1): one MLflow run whose global frame count goes on where the checkpoint left it, each iteration
    # adding ranks x 200 frames. The single-process fits run in this process (no launch to pay).
    folder = str(in_tmp / "ckpt")
    for devices, total, resume in (("1", "400", []), ("2", "1200", ["--ckpt_path", "last"]),
                                   ("1", "1600", ["--ckpt_path", "last"])):
        args = cli_args("fit", "--trainer.devices", devices, "--model.total_frames", total,
                        "--trainer.callbacks.init_args.dirpath", folder, *resume)
        if devices == "1":
            cli_main(args)
        else:
            proc = subprocess.run(
                [sys.executable, "-m", "marl_lightning", *args, "--trainer.strategy", "ddp"],
                capture_output=True, text=True, cwd=in_tmp, timeout=600,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
        checkpoint = torch.load(in_tmp / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
        assert int(checkpoint["state_dict"]["frames"]) == int(total)
    client, run = only_run(in_tmp / "mlflow.db")
    frames = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/frames"))
    assert frames == [200, 400, 800, 1200, 1400, 1600]
    # MAPPO's 2 ranks (ranks see different data) held the same parameters and buffers: logged only then
    divergence = client.get_metric_history(run.info.run_id, "dist/param_divergence")
    assert sorted((m.step, m.value) for m in divergence) == [(800, 0.0), (1200, 0.0)]
    assert int(checkpoint["state_dict"]["iterations"]) == 6
