"""Sequential multi-agent PPO (paper 002): update order, earlier agents seen at their new policies, β_k,
and the agent-wise optimiser that makes one agent's update leave the others untouched."""

from __future__ import annotations

import math

import pytest
import torch

from marl_lightning import SequentialPPO
from marl_lightning.cli import MarlCLI
from marl_lightning.errors import ConfigError
from marl_lightning.objectives.agentwise_adam import AgentwiseAdam
from tests.conftest import CONF, make_spec


def test_agentwise_adam_steps_one_agent_exactly_like_adam_and_leaves_the_others():
    torch.manual_seed(0)
    stacked = torch.nn.Parameter(torch.randn(3, 4, 2))
    single = torch.nn.Parameter(stacked.detach()[1].clone())
    ours = AgentwiseAdam([stacked], n_agents=3, lr=0.1)
    reference = torch.optim.Adam([single], lr=0.1, eps=1e-8)
    before = stacked.detach().clone()
    for _ in range(3):
        grad = torch.randn(4, 2)
        stacked.grad = torch.zeros_like(stacked)
        stacked.grad[1] = grad
        single.grad = grad.clone()
        ours.step(1)
        reference.step()
    torch.testing.assert_close(stacked.detach()[1], single.detach())
    assert torch.equal(stacked.detach()[0], before[0]) and torch.equal(stacked.detach()[2], before[2])
    stacked.grad = torch.ones_like(stacked)  # a later step of agent 0 does not move agent 1 either
    after_one = stacked.detach()[1].clone()
    ours.step(0)
    assert torch.equal(stacked.detach()[1], after_one)


def test_beta_schedule_and_shared_actor_refused():
    module = SequentialPPO(env_spec=make_spec(), beta=0.5, beta_schedule="sqrt_k")
    for k in (0, 3, 8):
        module.iterations.fill_(k)
        assert module.current_beta() == pytest.approx(0.5 * math.sqrt(k + 1))
    assert SequentialPPO(env_spec=make_spec(), beta=0.5, beta_schedule="constant").current_beta() == 0.5
    with pytest.raises(ConfigError, match="share_actor_params"):
        SequentialPPO(env_spec=make_spec(), share_actor_params=True)


def _fit(order: str, in_tmp, seed: int = 0):
    args = [
        "--config", str(CONF / "seqppo.yaml"), "--config", str(CONF / "env" / "ratio_game.yaml"),
        "--data.num_envs", "8", "--data.frames_per_batch", "80", "--data.total_frames", "80",
        "--model.init_args.minibatch_size", "40", "--model.init_args.num_epochs", "2",
        "--model.init_args.actor_cells", "[8]", "--model.init_args.critic_cells", "[8]",
        "--model.init_args.order", order, "--model.init_args.lr", "0.01", "--seed_everything", str(seed),
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks.init_args.dirpath", str(in_tmp / "ckpt"),
    ]
    cli = MarlCLI(args=args, run=False)
    model = cli.model
    seen: dict[int, torch.Tensor] = {}
    original = model.agent_objective

    def spy(td, agent, earlier_ratio, advantage, beta):
        if td.shape[0] == 80:  # the full-batch call after an agent's phase
            seen[agent] = earlier_ratio.clone()
        return original(td, agent, earlier_ratio, advantage, beta)

    model.agent_objective = spy
    cli.trainer.fit(model, datamodule=cli.datamodule)
    return model, seen


@pytest.mark.simulator
@pytest.mark.parametrize("order", ["fixed", "random"])
def test_agents_update_in_order_and_later_agents_see_the_updated_ones(order, in_tmp):
    torch.manual_seed(0)
    model, seen = _fit(order, in_tmp)
    if order == "fixed":
        assert model.last_order == [0, 1]
    assert sorted(model.last_order) == [0, 1]
    first, second = model.last_order
    # The first agent is weighted by nothing; the second by the first's new/old ratio on the iteration's data.
    assert torch.equal(seen[first], torch.ones(80))
    assert not torch.allclose(seen[second], torch.ones(80))
    assert (seen[second] > 0).all()


@pytest.mark.simulator
def test_each_phase_moves_only_its_agent(in_tmp):
    model, _ = _fit("fixed", in_tmp)
    optimizer = model._actor_optimizer
    steps = {int(s) for state in optimizer.state.values() for s in state["step"]}
    # 2 epochs x 2 minibatches per agent: both agents were stepped 4 times each, independently
    for state in optimizer.state.values():
        assert state["step"].tolist() == [4, 4]
    assert steps == {4}


@pytest.mark.simulator
def test_random_order_is_a_seeded_permutation(in_tmp):
    orders = set()
    for seed in range(6):
        model, _ = _fit("random", in_tmp / str(seed), seed=seed)
        orders.add(tuple(model.last_order))
    assert orders == {(0, 1), (1, 0)}
    again, _ = _fit("random", in_tmp / "again", seed=0)
    first, _ = _fit("random", in_tmp / "first", seed=0)
    assert again.last_order == first.last_order
