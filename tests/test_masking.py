"""Agents that die early (PettingZoo ``use_mask``): out of advantages, losses and statistics, never NaN."""

from __future__ import annotations

import pytest
import torch

from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.data.team_signals import expand_team_signals
from marl_lightning.envs import PettingZoo
from marl_lightning.models import build_actor, build_critic
from marl_lightning.objectives import MultiAgentPPOLoss, standardise_per_agent
from tests.conftest import cli_args, make_spec, synthetic_batch

DYING = {"lifetimes": [2, 5, 8], "max_cycles": 8}


def _loss_and_batch():
    torch.manual_seed(0)
    spec = make_spec(continuous=False)
    actor = build_actor(spec, [16], share_params=False)
    critic = build_critic(spec, [16], share_params=False, centralised=False)
    batch = synthetic_batch(spec, batch=32)  # [32, 3]
    with torch.no_grad():
        actor(batch)
    batch[keys.ACTION_LOG_PROB] = batch[keys.ACTION_LOG_PROB] - 0.1 * torch.randn(32, 3)  # ratio != 1
    mask = torch.ones(32, 3, dtype=torch.bool)
    mask[10:, 2] = False  # agent 2 dead from sample 10 on
    batch[keys.MASK] = mask
    return MultiAgentPPOLoss(actor, critic, clip_epsilon=0.2, entropy_coeff=0.01), batch, mask


def test_absent_agents_are_left_out_of_the_loss_and_cannot_make_it_nan():
    loss, batch, mask = _loss_and_batch()
    out = loss(batch)
    # Garbage in the absent entries (what a dead agent's row may hold) changes nothing.
    poisoned = batch.clone()
    poisoned[keys.ADVANTAGE][~mask] = float("nan")
    poisoned[keys.VALUE_TARGET][~mask] = float("inf")
    poisoned[keys.ACTION_LOG_PROB][~mask] = float("nan")
    out_poisoned = loss(poisoned)
    for name in ("loss_objective", "loss_critic", "loss_entropy"):
        torch.testing.assert_close(out_poisoned[name], out[name])
        assert torch.isfinite(out[name])
    grads = torch.autograd.grad(
        out_poisoned["loss_objective"] + out_poisoned["loss_critic"],
        list(loss.parameters()),
        allow_unused=True,
    )
    assert all(g is None or torch.isfinite(g).all() for g in grads)

    # The policy loss is the clipped surrogate averaged over the present entries only.
    dist = loss.actor_network.get_dist(batch.clone())
    ratio = (dist.log_prob(batch[keys.ACTION]) - batch[keys.ACTION_LOG_PROB]).exp()  # [32, 3]
    advantage = batch[keys.ADVANTAGE].squeeze(-1)
    surrogate = torch.minimum(ratio * advantage, ratio.clamp(0.8, 1.2) * advantage)
    torch.testing.assert_close(out["loss_objective"], -surrogate[mask].mean())
    with torch.no_grad():
        value = loss.critic_network(batch.clone())[keys.STATE_VALUE].squeeze(-1)
    expected_critic = (value - batch[keys.VALUE_TARGET].squeeze(-1))[mask].pow(2).mean()
    torch.testing.assert_close(out["loss_critic"], expected_critic)
    # agent 2's diagnostics come from its 10 live samples
    kl = (ratio - 1) - ratio.log()
    torch.testing.assert_close(out["approx_kl"][2], kl[:10, 2].mean())


def test_masked_standardisation_uses_present_entries_only():
    advantage = torch.randn(50, 3, 1)
    mask = torch.rand(50, 3) > 0.3
    out = standardise_per_agent(advantage, mask=mask)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    for agent in range(3):
        live = advantage[mask[:, agent], agent, 0]
        expected = (live - live.mean()) / live.std()
        torch.testing.assert_close(out[mask[:, agent], agent, 0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.simulator
def test_dying_agents_env_layout():
    env = PettingZoo("tests.dying_agents_env", DYING, use_mask=True).make_transformed(2, "cpu", seed=0)
    rollout = env.rollout(10, break_when_any_done=False)  # [2, 10]
    alive = rollout[keys.MASK][0].T  # [3, 10]
    # agent i acts during its lifetime, then again after the reset at step 8
    assert alive.sum(1).tolist() == [2 + 2, 5 + 2, 8 + 2]
    done_root = rollout[keys.nxt(keys.ROOT_DONE)][0].squeeze(-1)
    assert done_root[7] and not done_root[:7].any()  # the episode ends when the last agent is done


@pytest.mark.simulator
def test_compute_advantages_stops_at_death_and_zeroes_absent_entries(in_tmp):
    cli = MarlCLI(args=_dying_args("ippo.yaml", in_tmp, iterations=1)[1:], run=False)
    model, factory = cli.model, cli.datamodule.env_factory
    env = factory.make_transformed(4, "cpu", seed=0)
    with torch.no_grad():
        batch = expand_team_signals(env.rollout(8, model.policy), n_agents=3)  # [4, 8]
    model.compute_advantages(batch)
    present = batch[keys.MASK]
    advantage = batch[keys.ADVANTAGE].squeeze(-1)  # [B, T, A]
    assert torch.equal(advantage[~present], torch.zeros_like(advantage[~present]))
    # Agent 0 lives 2 steps: its advantage at its last step is r − V(s) (no bootstrap from a dead state).
    value = model.critic(batch.clone())[keys.STATE_VALUE].squeeze(-1)
    reward = batch[keys.nxt(keys.REWARD)].squeeze(-1)
    torch.testing.assert_close(advantage[:, 1, 0], reward[:, 1, 0] - value[:, 1, 0])


def _dying_args(config: str, tmp, iterations: int) -> list[str]:
    return cli_args(
        "fit",
        "--data.env",
        "marl_lightning.envs.PettingZoo",
        "--data.env.init_args.env",
        "tests.dying_agents_env",
        "--data.env.init_args.env_kwargs",
        str(DYING),
        "--data.env.init_args.use_mask",
        "true",
        "--data.env.init_args.max_steps",
        "8",
        "--data.num_envs",
        "10",
        "--data.frames_per_batch",
        "160",
        "--model.total_frames",
        str(160 * iterations),
        "--model.init_args.minibatch_size",
        "80",
        "--trainer.logger",
        "false",
        "--trainer.callbacks.init_args.dirpath",
        str(tmp / "ckpt"),
        config=config,
        small=False,
    )


@pytest.mark.simulator
@pytest.mark.parametrize("config", ["mappo.yaml", "ippo.yaml"])
def test_training_with_dying_agents_stays_finite_and_learns_the_rewarded_action(config, in_tmp):
    args = _dying_args(config, in_tmp, iterations=15)
    args += ["--model.init_args.lr", "3e-3", "--model.init_args.actor_cells", "[16]",
             "--model.init_args.critic_cells", "[16]", "--trainer.enable_progress_bar", "false"]
    cli = MarlCLI(args=args)
    assert int(cli.model.iterations) == 15
    metrics = cli.trainer.callback_metrics
    for name in ("loss/policy", "loss/value", "train/return_mean", "eval/return_mean"):
        assert torch.isfinite(metrics[name]), name
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    # Action 0 earns 1 per live step: a random policy gets half of the lifetimes (2, 5, 8) -> 2.5 per agent,
    # the optimum 5. Learning must have moved well above chance.
    assert float(metrics["eval/return_mean"]) > 3.5
