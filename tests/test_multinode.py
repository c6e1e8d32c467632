"""Multi-node training on one machine: two "nodes" of one CPU process each, started by ``torchrun``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, cli_args, metric_history, only_run
from tests.crashing_env import MESSAGE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_nodes(
    folders: list[Path], *fit_args: str, timeout: float = 600
) -> list[subprocess.CompletedProcess]:
    """``torchrun --nnodes N --node_rank r --master_addr 127.0.0.1`` once per folder (a "node" each, its own
    working directory, as on separate machines), all at once; their exits."""
    port, env = str(free_port()), {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = []
    for rank, folder in enumerate(folders):
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(len(folders)),
               "--nproc_per_node", "1", "--node_rank", str(rank), "--master_addr", "127.0.0.1",
               "--master_port", port, "-m", "marl_lightning", *fit_args]
        procs.append(subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    return [subprocess.CompletedProcess(p.args, p.returncode, o) for p, o in zip(procs, outputs, strict=True)]


@pytest.mark.simulator
def test_two_torchrun_nodes_train_one_run_with_identical_ranks_and_only_rank_0_writes(tmp_path):
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    fit = cli_args("fit", "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp",
                   "--model.total_frames", "800", config="dpo.yaml")
    results = torchrun_nodes(nodes, *fit)
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:]
    # Rank 1 ran on its own "machine": it created no tracking store, lock or checkpoint folder there.
    assert sorted(p.name for p in nodes[1].iterdir()) == []

    client, run = only_run(nodes[0] / "mlflow.db")

    def history(name):
        return metric_history(client, run, name)

    # each rank collects 200 frames an iteration; the global budget of 800 is spent in 2 iterations
    assert history("train/frames") == [(400, 400.0), (800, 800.0)]
    # parameters and buffers (β1, β2, the counters) summed per rank: the same on both ranks
    assert [v for _, v in history("dist/param_divergence")] == [0.0, 0.0]
    assert run.data.tags["world_size"] == "2"
    checkpoint = torch.load(next(nodes[0].glob("checkpoints/*/*/last.ckpt")), map_location="cpu",
                            weights_only=True)
    state = checkpoint["state_dict"]
    assert int(state["frames"]) == 800
    assert not torch.equal(state["loss_module.beta1"], torch.full((3,), 0.01))  # β was adapted, not left


CRASHING = ["--data.env", "tests.crashing_env.CrashingStochasticGame",  # rank 1 raises in its 2nd rollout
            "--data.env.init_args.at_step", "30", "--model.total_frames", "4000"]
CRASH_TIMEOUT_S = 180  # a hang would wait for the collective's timeout (30 min)
# (Lightning's own launcher, --trainer.devices 2, ends the same way, and also kills the other processes
# once one exits non-zero: docs/distributed.md.)


def _failed_run(store: Path) -> str:
    _, run = only_run(store)
    assert run.info.status == "FAILED"
    return run.data.tags["error"]


@pytest.mark.simulator
def test_a_rank_that_crashes_under_torchrun_brings_every_node_down(tmp_path):
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    fit = cli_args("fit", "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp",
                   *CRASHING)
    results = torchrun_nodes(nodes, *fit, timeout=CRASH_TIMEOUT_S)
    assert [r.returncode for r in results] == [1, 1]
    assert f"{MESSAGE} on rank 1 at step 30" in results[1].stdout
    assert "remote worker crashing" in _failed_run(nodes[0] / "mlflow.db")  # rank 0's view: its peer is gone
