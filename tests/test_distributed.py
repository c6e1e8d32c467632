"""Multi-process training on a real (gloo, CPU) process group."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from marl_lightning.launch.distributed import all_reduce_gradients, broadcast_from_rank_zero, reduce
from tests.conftest import cli_command, metric_history, only_run


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


# Every algorithm of the product (MAPPO in the resume test below, DPO under torchrun in test_multinode.py;
# the tabular PessimisticSequentialPPO refuses several processes: test_bad_input.py). Sequential PPO's
# random agent order is rank 0's draw on every rank: before, each rank drew its own and the parameters
# drifted apart (divergence 0.06 after one iteration).
@pytest.mark.simulator
@pytest.mark.parametrize(
    "config", ["ippo.yaml", "jrppo.yaml", "seqppo.yaml", "perla_mappo.yaml", "perla_ippo.yaml"]
)
def test_two_process_fit_keeps_ranks_identical(in_tmp, config):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cli_command(
            "fit",
            "--trainer.strategy",
            "ddp",
            "--trainer.devices",
            "2",
            "--trainer.accelerator",
            "cpu",
            "--model.total_frames",
            "800",
            "--trainer.callbacks.init_args.dirpath",
            str(in_tmp / "ckpt"),
            config=config,
        ),
        capture_output=True,
        text=True,
        cwd=in_tmp,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, run = only_run(in_tmp / "mlflow.db")

    def history(name):
        return metric_history(client, run, name)

    # each of the 2 ranks collects 200 frames per iteration: the budget of 800 is spent in 2 iterations
    assert history("train/frames") == [(400, 400.0), (800, 800.0)]
    # ranks see different data; identical parameters and buffers mean the gradients really were averaged
    assert [v for _, v in history("dist/param_divergence")] == [0.0, 0.0]
    assert history("eval/episodes") == [(800, 8.0)]
    checkpoint = torch.load(in_tmp / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert int(checkpoint["state_dict"]["frames"]) == 800


@pytest.mark.simulator
def test_a_checkpoint_resumes_on_another_number_of_ranks(in_tmp):
    # 1 rank for 2 iterations, resumed on 2 ranks (1 -> 2), then on 1 again (2 -> 1): one MLflow run whose
    # global frame count goes on where the checkpoint left it, each iteration adding ranks x 200 frames.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    folder = str(in_tmp / "ckpt")
    for devices, total, resume in (("1", "400", []), ("2", "1200", ["--ckpt_path", "last"]),
                                   ("1", "1600", ["--ckpt_path", "last"])):
        strategy = ["--trainer.strategy", "ddp"] if devices == "2" else []
        proc = subprocess.run(
            cli_command("fit", "--trainer.devices", devices, *strategy, "--model.total_frames", total,
                        "--trainer.callbacks.init_args.dirpath", folder, *resume),
            capture_output=True, text=True, cwd=in_tmp, timeout=600, env=env,
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
