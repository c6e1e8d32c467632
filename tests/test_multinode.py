"""Multi-node training on one machine: two "nodes" of one CPU process each, started by ``torchrun``; every
algorithm of the product on their process group."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, cli_args, metric_history, only_run
from tests.crashing_env import MESSAGE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_nodes(
    folders: list[Path], *fit_args: str, module: str = "marl_lightning", timeout: float = 600
) -> list[subprocess.CompletedProcess]:
    """``torchrun --nnodes N --node_rank r --master_addr 127.0.0.1 -m <module> <fit_args>`` once per folder
    (a "node" each, its own working directory, as on separate machines), all at once; their exits."""
    port, env = str(free_port()), {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = []
    for rank, folder in enumerate(folders):
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(len(folders)),
               "--nproc_per_node", "1", "--node_rank", str(rank), "--master_addr", "127.0.0.1",
               "--master_port", port, "-m", module, *fit_args]
        procs.append(subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    return [subprocess.CompletedProcess(p.args, p.returncode, o) for p, o in zip(procs, outputs, strict=True)]


# Every algorithm of the product (the tabular PessimisticSequentialPPO refuses several processes:
# test_bad_input.py; MAPPO under Lightning's own launcher: test_distributed.py). Sequential PPO's random
# agent order is rank 0's draw on every rank: before, each rank drew its own and the parameters drifted
# apart (divergence 0.06 after one iteration).
ALGORITHMS = {"dpo.yaml": "DPO", "ippo.yaml": "IPPO", "jrppo.yaml": "JRPPO", "seqppo.yaml": "SequentialPPO",
              "perla_mappo.yaml": "PERLAMAPPO", "perla_ippo.yaml": "PERLAIPPO"}


@pytest.mark.simulator
def test_every_algorithm_on_two_torchrun_nodes_keeps_ranks_identical_and_only_rank_0_writes(tmp_path):
    """One fit per algorithm, one after another on the same two torchrun processes
    (``tests.fits_in_one_process``): each is one MLflow run whose ranks hold identical parameters and
    buffers although they see different data, so the gradients really were averaged."""
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    fits = [cli_args("fit", "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp",
                     "--model.total_frames", "800", config=config) for config in ALGORITHMS]
    results = torchrun_nodes(nodes, json.dumps(fits), module="tests.fits_in_one_process")
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:]
    # Rank 1 ran on its own "machine": it created no tracking store, lock or checkpoint folder there.
    assert sorted(p.name for p in nodes[1].iterdir()) == []

    client = MlflowClient(f"sqlite:///{nodes[0] / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    by_algorithm = {run.data.params["algorithm"]: run for run in runs}
    assert sorted(by_algorithm) == sorted(ALGORITHMS.values()) and len(runs) == len(ALGORITHMS)
    for algorithm, run in by_algorithm.items():
        def history(name, run=run):
            return metric_history(client, run, name)

        # each rank collects 200 frames an iteration; the global budget of 800 is spent in 2 iterations
        assert history("train/frames") == [(400, 400.0), (800, 800.0)], algorithm
        # parameters and buffers (β1, β2, the counters) summed per rank: the same on both ranks
        assert [v for _, v in history("dist/param_divergence")] == [0.0, 0.0], algorithm
        assert history("eval/episodes") == [(800, 8.0)], algorithm  # 4 evaluation episodes on each rank
        assert run.data.tags["world_size"] == "2" and run.info.status == "FINISHED"
        experiment = client.get_experiment(run.info.experiment_id).name
        checkpoint = torch.load(nodes[0] / "checkpoints" / experiment / run.info.run_name / "last.ckpt",
                                map_location="cpu", weights_only=True)
        assert int(checkpoint["state_dict"]["frames"]) == 800, algorithm
        if algorithm == "DPO":  # β was adapted, not left at its start
            assert not torch.equal(checkpoint["state_dict"]["loss_module.beta1"], torch.full((3,), 0.01))


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
