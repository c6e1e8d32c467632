"""Real runs on VMAS (small sizes): batch layout, determinism, resume, evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from marl_lightning import MAPPO
from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from tests.conftest import cli_args

pytestmark = pytest.mark.simulator


def _fit(
    tmp: Path, name: str, total_frames: int, *extra: str, seed: int = 0, config: str = "mappo.yaml"
) -> MarlCLI:
    return MarlCLI(
        args=cli_args(
            "fit",
            "--trainer.logger",
            "false",
            "--trainer.callbacks.init_args.dirpath",
            str(tmp / name),
            "--model.total_frames",
            str(total_frames),
            "--seed_everything",
            str(seed),
            *extra,
            config=config,
        )
    )


def _evaluate(subcommand: str, checkpoint: Path) -> dict:
    cli = MarlCLI(args=cli_args(subcommand, "--trainer.logger", "false", "--ckpt_path", str(checkpoint)))
    # the evaluated policy is the checkpoint's
    assert int(cli.model.frames) == int(_checkpoint(checkpoint)["state_dict"]["frames"])
    return dict(cli.trainer.callback_metrics)


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _assert_same_training_state(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(tensor, b["state_dict"][name], rtol=0, atol=0, msg=name)
    opt_a, opt_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert opt_a.keys() == opt_b.keys()
    for index in opt_a:
        for field in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(opt_a[index][field], opt_b[index][field], rtol=0, atol=0)


def test_fit_counts_frames_and_stops_at_the_budget(in_tmp):
    cli = _fit(in_tmp, "a", 600)
    model = cli.model
    assert int(model.frames) == 600
    assert int(model.iterations) == 3
    ckpt = _checkpoint(in_tmp / "a" / "last.ckpt")
    assert int(ckpt["state_dict"]["frames"]) == 600
    assert {"torch", "numpy", "python"} <= ckpt["rng_states"].keys()
    assert ckpt["optimizer_states"][0]["state"], "optimiser state missing from the checkpoint"


def test_same_seed_same_parameters_other_seed_differs(in_tmp):
    a = _checkpoint(Path(_fit(in_tmp, "a", 400).trainer.checkpoint_callback.last_path()))
    b = _checkpoint(Path(_fit(in_tmp, "b", 400).trainer.checkpoint_callback.last_path()))
    _assert_same_training_state(a, b)
    c = _checkpoint(Path(_fit(in_tmp, "c", 400, seed=1).trainer.checkpoint_callback.last_path()))
    name = next(k for k in a["state_dict"] if k.startswith("actor"))
    assert not torch.equal(a["state_dict"][name], c["state_dict"][name])


def test_fit_four_equals_fit_two_then_resume_two(in_tmp):
    _fit(in_tmp, "straight", 800)
    _fit(in_tmp, "resumed", 400)
    assert int(_checkpoint(in_tmp / "resumed" / "last.ckpt")["state_dict"]["iterations"]) == 2
    _fit(in_tmp, "resumed", 800, "--ckpt_path", "last")
    straight = _checkpoint(in_tmp / "straight" / "last.ckpt")
    resumed = _checkpoint(in_tmp / "resumed" / "last.ckpt")
    assert int(resumed["state_dict"]["iterations"]) == 4
    _assert_same_training_state(straight, resumed)


def test_batch_layout_and_shared_policy_weights(in_tmp, monkeypatch):
    seen: list = []

    def recording(self, batch):
        collector_policy = self.trainer.datamodule.collector.policy
        seen.append((batch.clone(), {p.data_ptr() for p in collector_policy.parameters()}))
        return original(self, batch)

    original = MAPPO.compute_advantages
    monkeypatch.setattr(MAPPO, "compute_advantages", recording)
    cli = _fit(in_tmp, "a", 400)
    batch, collector_params = seen[0]
    n_envs, steps, n_agents = 10, 20, 3
    assert batch.batch_size == torch.Size([n_envs, steps])
    assert batch[keys.OBSERVATION].shape[:3] == (n_envs, steps, n_agents)
    assert batch[keys.ACTION].shape == (n_envs, steps, n_agents, 2)
    assert batch[keys.ACTION_LOG_PROB].shape == (n_envs, steps, n_agents)
    for key in (keys.REWARD, keys.DONE, keys.TERMINATED):
        assert batch[keys.nxt(key)].shape == (n_envs, steps, n_agents, 1), key
    # team done expanded, not altered; the episode limit is the iteration's end
    team_done = batch[keys.nxt(keys.ROOT_DONE)]
    assert torch.equal(batch[keys.nxt(keys.DONE)], team_done.unsqueeze(-2).expand(-1, -1, n_agents, -1))
    assert team_done[:, -1].all() and not team_done[:, :-1].any()
    assert collector_params == {p.data_ptr() for p in cli.model.actor.parameters()}


def test_validate_is_deterministic_and_counts_episodes(in_tmp):
    _fit(in_tmp, "a", 200)
    results = [_evaluate("validate", in_tmp / "a" / "last.ckpt") for _ in range(2)]
    assert results[0]["eval/episodes"] == 4
    assert torch.isfinite(results[0]["eval/return_mean"])
    assert results[0]["eval/return_mean"] == results[1]["eval/return_mean"]


def test_ippo_trains_with_decentralised_critics(in_tmp):
    cli = _fit(in_tmp, "ippo", 200, config="ippo.yaml")
    model = cli.model
    assert type(model).__name__ == "IPPO"
    assert int(model.iterations) == 1
    assert model.critic.module.centralized is False
    assert torch.isfinite(cli.trainer.callback_metrics["loss/value"])


def test_discrete_actions_use_a_categorical_policy(in_tmp):
    cli = _fit(in_tmp, "discrete", 200, "--data.env.init_args.continuous_actions", "false")
    spec = cli.model.env_spec
    assert not spec.continuous and spec.action_dim == 9  # VMAS navigation: 9 discrete moves
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["loss/policy"]) and metrics["tr/kl/agent_0"] >= 0


def test_test_subcommand_logs_the_evaluation(in_tmp):
    _fit(in_tmp, "a", 200)
    metrics = _evaluate("test", in_tmp / "a" / "last.ckpt")
    assert metrics["eval/episodes"] == 4
    assert torch.isfinite(metrics["eval/return_mean"])
