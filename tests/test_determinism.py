"""The same seed gives the same training, bit for bit on CPU, for every algorithm."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from marl_lightning.cli import MarlCLI
from tests.conftest import CONF

pytestmark = pytest.mark.simulator
ALGORITHMS = ["mappo.yaml", "ippo.yaml", "ippo_kl.yaml", "dpo.yaml", "jrppo.yaml", "perla_mappo.yaml",
              "perla_ippo.yaml", "seqppo.yaml", "seqppo_pessimistic.yaml"]


def _fit(algorithm: str, folder: Path, seed: int) -> dict[str, torch.Tensor]:
    small = [] if algorithm == "seqppo_pessimistic.yaml" else [  # tabular: the ratio game's exact tables
        "--data.num_envs", "4", "--data.frames_per_batch", "40", "--data.eval_episodes", "2",
        "--model.init_args.minibatch_size", "20", "--model.init_args.num_epochs", "2",
        "--model.init_args.actor_cells", "[16]", "--model.init_args.critic_cells", "[16]",
    ]
    cli = MarlCLI(args=[
        "fit", "--config", str(CONF / algorithm), *small, "--model.total_frames", "80",
        "--seed_everything", str(seed), "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.callbacks.init_args.dirpath", str(folder),
    ])
    assert int(cli.model.iterations) >= 1
    return {name: value.detach().clone() for name, value in cli.model.state_dict().items()}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_same_seed_same_parameters(algorithm, in_tmp):
    first = _fit(algorithm, in_tmp / "a", seed=3)
    second = _fit(algorithm, in_tmp / "b", seed=3)
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=name)
    # (that another seed gives other parameters: tests/test_training_runs.py)
