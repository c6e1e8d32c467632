"""Sequential multi-agent PPO (paper 002): update order, earlier agents seen at their new policies, β_k,
and the agent-wise optimiser that makes one agent's update leave the others untouched."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

from marl_lightning import SequentialPPO
from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.models import build_actor, build_critic
from marl_lightning.objectives.agentwise_adam import AgentwiseAdam
from marl_lightning.objectives.sequential import SequentialPPOLoss
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


def test_sqrt_K_schedule_counts_the_iterations_of_the_budget():
    module = SequentialPPO(env_spec=make_spec(), beta=0.5, beta_schedule="sqrt_K", total_frames=1000)
    # K = ceil(1000 / 300) = 4
    assert module.current_beta(frames_per_iteration=300) == pytest.approx(0.5 * math.sqrt(4))
    with pytest.raises(ValueError, match="frames of one iteration"):
        module.current_beta()


def _fit(order: str, in_tmp, seed: int = 0, *extra: str):
    """One iteration of 80 frames on the ratio game, recording each gradient step and each agent phase."""
    args = [
        "--config", str(CONF / "seqppo.yaml"), "--config", str(CONF / "env" / "ratio_game.yaml"),
        "--data.num_envs", "8", "--data.frames_per_batch", "80", "--model.total_frames", "80",
        "--model.init_args.minibatch_size", "40", "--model.init_args.num_epochs", "2",
        "--model.init_args.actor_cells", "[8]", "--model.init_args.critic_cells", "[8]",
        "--model.init_args.order", order, "--model.init_args.lr", "0.01", "--seed_everything", str(seed),
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks.init_args.dirpath", str(in_tmp / "ckpt"), *extra,
    ]
    cli = MarlCLI(args=args, run=False)
    model = cli.model
    steps: list[tuple] = []  # (phase agent, agents whose actor slice moved, critic moved, objective)
    minibatches: dict[int, list] = {}  # agent -> the minibatches its objective saw
    step_original, objective_original = model.gradient_step, model.loss_module.policy_objective

    def gradient_step(loss, phase, permits):
        actor = [p.detach().clone() for p in model.actor.parameters()]
        critic = [p.detach().clone() for p in model.critic.parameters()]
        step_original(loss, phase, permits)
        moved = {i for i in range(2) if any(not torch.equal(b[i], p.detach()[i])
                                            for b, p in zip(actor, model.actor.parameters(), strict=True))}
        critic_moved = any(not torch.equal(b, p.detach()) for b, p in zip(critic, model.critic.parameters(),
                                                                        strict=True))
        steps.append((phase.agent, moved, critic_moved, phase.objective))

    def policy_objective(step):
        agent = int(step.mask[0].nonzero())
        minibatches.setdefault(agent, []).append(step.batch.clone())
        return objective_original(step)

    model.gradient_step = gradient_step
    model.loss_module.policy_objective = policy_objective
    cli.trainer.fit(model, datamodule=cli.datamodule)
    return model, steps, minibatches


@pytest.mark.simulator
@pytest.mark.parametrize("order", ["fixed", "random"])
def test_agents_update_in_order_and_later_agents_see_the_updated_ones(order, in_tmp):
    torch.manual_seed(0)
    model, steps, minibatches = _fit(order, in_tmp)
    if order == "fixed":
        assert model.last_order == [0, 1]
    assert sorted(model.last_order) == [0, 1]
    first, second = model.last_order
    assert [agent for agent, *_ in steps] == [None] * 4 + [first] * 4 + [second] * 4
    # The first agent is weighted by nothing; the second by the first's new/old ratio on the same samples,
    # which the final policy still gives (the second agent's phase does not move the first).
    assert all(torch.equal(td[keys.EARLIER_RATIO], torch.ones(40)) for td in minibatches[first])
    with torch.no_grad():
        for td in minibatches[second]:
            log_prob = model.actor.get_dist(td.select(keys.OBSERVATION).copy()).log_prob(td[keys.ACTION])
            expected = (log_prob[:, first] - td[keys.ACTION_LOG_PROB][:, first]).exp()
            torch.testing.assert_close(td[keys.EARLIER_RATIO], expected)
            assert not torch.allclose(expected, torch.ones(40))


@pytest.mark.simulator
@pytest.mark.parametrize("loss_critic_type", ["l2", "l1"])
def test_each_phase_moves_only_its_agent(loss_critic_type, in_tmp):
    model, steps, _ = _fit("fixed", in_tmp, 0, "--model.init_args.loss_critic_type", loss_critic_type)
    for agent, moved, critic_moved, objective in steps:
        if agent is None:  # the critic's phase: the shared critic loss, the actor untouched
            assert moved == set() and critic_moved
            assert objective == model.loss_module.critic_loss
        else:  # agent m's phase: only agent m's slice of the actor moves
            assert moved == {agent} and not critic_moved
    assert model.loss_module.loss_critic_type == loss_critic_type
    for state in model.optimizers()[1].optimizer.state.values():  # 2 epochs x 2 minibatches per agent
        assert state["step"].tolist() == [4, 4]


@pytest.mark.simulator
def test_random_order_is_a_seeded_permutation(in_tmp):
    orders = set()
    for seed in range(6):
        model, *_ = _fit("random", in_tmp / str(seed), seed)
        orders.add(tuple(model.last_order))
    assert orders == {(0, 1), (1, 0)}
    again, *_ = _fit("random", in_tmp / "again", 0)
    first, *_ = _fit("random", in_tmp / "first", 0)
    assert again.last_order == first.last_order


def _loss_case(regulariser: str = "kl", loss_critic_type: str = "l2"):
    """A discrete 2-agent policy moved away from the one that collected a minibatch of 6."""
    torch.manual_seed(0)
    spec = make_spec(n_agents=2, observation_dim=3, continuous=False)
    actor, critic = build_actor(spec, [5], False), build_critic(spec, [5], False, True)
    loss = SequentialPPOLoss(actor, critic, regulariser=regulariser, clip_epsilon=0.1, critic_coeff=0.5,
                             loss_critic_type=loss_critic_type)
    td = TensorDict({keys.OBSERVATION: torch.randn(6, 2, 3)}, batch_size=[6])
    with torch.no_grad():
        actor(td)  # the collecting policy: action, action_log_prob, logits
        for p in actor.parameters():
            p.add_(0.5 * torch.randn_like(p))
    td[keys.JOINT_ADVANTAGE] = torch.randn(6)
    td[keys.EARLIER_RATIO] = torch.rand(6) + 0.5
    td[keys.ADVANTAGE] = torch.randn(6, 2, 1)
    td[keys.VALUE_TARGET] = torch.randn(6, 2, 1)
    loss.beta.fill_(0.7)
    return loss, td


@pytest.mark.parametrize("regulariser", ["kl", "clip"])
def test_sequential_objective_against_hand_computed_numbers(regulariser):
    loss, td = _loss_case(regulariser)
    agent = 1
    out = loss.actor_loss(td, agent=agent)
    with torch.no_grad():
        logits = loss.actor_network(td.select(keys.OBSERVATION).copy())[keys.LOGITS]
        p_new = torch.softmax(logits[:, agent], -1)
    p_old = torch.softmax(td[keys.LOGITS][:, agent], -1)  # [6, n]
    action = td[keys.ACTION][:, agent]
    ratio = p_new.gather(-1, action[:, None]).squeeze(-1) / p_old.gather(-1, action[:, None]).squeeze(-1)
    weighted = td[keys.EARLIER_RATIO] * td[keys.JOINT_ADVANTAGE]
    if regulariser == "kl":  # −mean(M r A) + β KL(π_new ‖ π_old), paper 002 Eq. 3
        kl = (p_new * (p_new.log() - p_old.log())).sum(-1)
        expected = -(ratio * weighted).mean() + 0.7 * kl.mean()
    else:
        expected = -torch.minimum(ratio * weighted, ratio.clamp(0.9, 1.1) * weighted).mean()
    torch.testing.assert_close(out["loss_objective"].detach(), expected, rtol=1e-5, atol=1e-6)
    out["loss_objective"].backward()
    for p in loss.actor_network.parameters():  # unshared actor: agent 0's slice gets no gradient
        assert torch.count_nonzero(p.grad[0]) == 0 and torch.count_nonzero(p.grad[1]) > 0


@pytest.mark.parametrize("kind", ["l2", "l1", "smooth_l1"])
def test_sequential_critic_loss_against_hand_computed_numbers(kind):
    loss, td = _loss_case(loss_critic_type=kind)
    with torch.no_grad():
        value = loss.critic_network(td.copy())[keys.STATE_VALUE]
    d = value - td[keys.VALUE_TARGET]
    smooth = torch.where(d.abs() < 1, 0.5 * d**2, d.abs() - 0.5)
    distance = {"l2": d**2, "l1": d.abs(), "smooth_l1": smooth}[kind]
    torch.testing.assert_close(loss.critic_loss(td)["loss_critic"].detach(), 0.5 * distance.mean())
