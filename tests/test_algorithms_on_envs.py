"""Every algorithm trains 2 iterations on every environment, through the one batch layout."""

from __future__ import annotations

import json
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


# Episodes of 10 steps on the VMAS tasks (one an iteration), so the evaluation rolls 10 steps, not 100.
SHORT_EPISODES = {"navigation", "balance", "line_control", "circle_control", "simple_spread_vmas"}


def _callbacks(algorithm: str, folder: Path) -> str:
    """The default callbacks (and DPO's AdaptiveBeta) with the trust-region figures left out: drawing them
    is callbacks.TrustRegionMonitor's own test (tests/test_trust_region.py), not the algorithms'."""
    callbacks = [{"class_path": "callbacks.TrustRegionMonitor", "init_args": {"draw_at_end": False}}]
    if algorithm.startswith("dpo"):
        callbacks.append({"class_path": "callbacks.AdaptiveBeta"})
    callbacks.append({"class_path": "callbacks.IterationCheckpoint", "init_args": {"dirpath": str(folder)}})
    return json.dumps(callbacks)


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
        "--trainer.callbacks", _callbacks(algorithm, in_tmp / "ckpt"),
        *(["--data.env.init_args.max_steps", "10"] if env.stem in SHORT_EPISODES else []),
    ]
    cli = MarlCLI(args=args)
    model = cli.model
    assert int(model.iterations) == 2 and int(model.frames) == 80
    metrics = cli.trainer.callback_metrics
    for name in ("loss/policy", "loss/value", "eval/return_mean", "tr/tv_sum"):
        assert torch.isfinite(metrics[name]), name
    assert all(torch.isfinite(p).all() for p in model.parameters())
