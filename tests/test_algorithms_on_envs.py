"""Every algorithm trains 2 iterations on every environment, through the one batch layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from marl_lightning.cli import MarlCLI
from tests.conftest import CONF

pytestmark = [pytest.mark.simulator, pytest.mark.slow]
ALGORITHMS = [
    "mappo.yaml", "ippo.yaml", "dpo.yaml", "jrppo.yaml", "perla_mappo.yaml", "perla_ippo.yaml", "seqppo.yaml"
]
ENVS = sorted((CONF / "env").glob("*.yaml"))


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.stem)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_two_iterations(algorithm: str, env: Path, in_tmp):
    args = [
        "fit", "--config", str(CONF / algorithm), "--config", str(env),
        "--data.num_envs", "4", "--data.frames_per_batch", "40", "--model.total_frames", "80",
        "--data.eval_episodes", "2",
        "--model.init_args.minibatch_size", "20", "--model.init_args.num_epochs", "2",
        "--model.init_args.actor_cells", "[16]", "--model.init_args.critic_cells", "[16]",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.callbacks.init_args.dirpath", str(in_tmp / "ckpt"),
    ]
    cli = MarlCLI(args=args)
    model = cli.model
    assert int(model.iterations) == 2 and int(model.frames) == 80
    metrics = cli.trainer.callback_metrics
    for name in ("loss/policy", "loss/value", "eval/return_mean", "tr/tv_sum"):
        assert torch.isfinite(metrics[name]), name
    assert all(torch.isfinite(p).all() for p in model.parameters())
