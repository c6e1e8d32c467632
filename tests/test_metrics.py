"""Statistics declared once: reduction over ranks (a real gloo group) and metric names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from marl_lightning import DPO, IPPO, JRPPO, MAPPO, PERLAIPPO, PERLAMAPPO, SequentialPPO
from marl_lightning.algorithms import PessimisticSequentialPPO, metrics
from marl_lightning.algorithms.iteration import IterationModule
from marl_lightning.algorithms.metrics import Statistic, metric_values, reduce_over_ranks

TABLE = {
    "kl": Statistic("tr/kl/agent_{}"),
    "ratio_min": Statistic("tr/ratio_min/epoch_{}", "min"),
    "loss": Statistic("loss/policy", prog_bar=True),
    "returns": Statistic("train/return_mean", "ratio"),
    "checksum": Statistic("dist/param_divergence", "spread"),
    "hidden": Statistic(None, "max"),
}


def test_metric_names_from_the_declarations():
    values = {
        "kl": torch.tensor([0.1, 0.2]),
        "ratio_min": torch.tensor([[0.9, 0.8], [0.7, 1.0]]),  # [K, A]: the minimum over agents per epoch
        "loss": torch.tensor(-0.5),
        "returns": metrics.ratio(torch.tensor(6.0), 4),
        "checksum": torch.tensor(0.0),
        "hidden": torch.tensor(3.0),
    }
    logged, prog_bar = metric_values(values, TABLE)
    assert logged == pytest.approx({
        "tr/kl/agent_0": 0.1, "tr/kl/agent_1": 0.2, "tr/ratio_min/epoch_0": 0.8, "tr/ratio_min/epoch_1": 0.7,
        "loss/policy": -0.5, "train/return_mean": 1.5, "dist/param_divergence": 0.0,
    })
    assert prog_bar == {"loss/policy"}
    no_episode, _ = metric_values({"returns": metrics.ratio(torch.tensor(0.0), 0)}, TABLE)
    assert no_episode == {}  # a ratio with nothing counted is not logged


def test_an_undeclared_statistic_is_an_error():
    with pytest.raises(KeyError, match="typo"):
        reduce_over_ranks({"typo": torch.tensor(1.0)}, TABLE)


def _reduce(rank: int, init_file: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        values = {
            "kl": torch.tensor([float(rank), 1.0]),
            "ratio_min": torch.tensor([[0.9 - rank * 0.2, 1.0]]),
            "returns": metrics.ratio(torch.tensor(2.0 + rank), 1 + 3 * rank),  # 2/1 on rank 0, 3/4 on rank 1
            "checksum": torch.tensor(5.0 + rank),
            "hidden": torch.tensor(float(rank)),
        }
        results[rank] = metric_values(reduce_over_ranks(values, TABLE), TABLE)[0]
    finally:
        dist.destroy_process_group()


def test_reductions_over_a_real_process_group(tmp_path: Path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_reduce, args=(str(tmp_path / "init"), results), nprocs=2, join=True)
        results = dict(results)
    assert results[0] == results[1]
    assert results[0] == pytest.approx({
        "tr/kl/agent_0": 0.5, "tr/kl/agent_1": 1.0, "tr/ratio_min/epoch_0": 0.7,
        "train/return_mean": 5.0 / 5.0, "dist/param_divergence": 1.0,
    })


@pytest.mark.parametrize("algorithm", [MAPPO, IPPO, DPO, JRPPO, PERLAMAPPO, PERLAIPPO, SequentialPPO,
                                       PessimisticSequentialPPO])
def test_algorithms_extend_through_hooks_not_the_loop(algorithm):
    assert algorithm.training_step is IterationModule.training_step
    names = [stat.metric for stat in algorithm.statistics.values() if stat.metric]
    assert len(names) == len(set(names)), "a metric name declared twice"
