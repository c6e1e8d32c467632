"""PERLA's marginalised critic (paper 000): the joint-action input, Equation 2 against enumeration,
Theorem 3 (same mean as K = 1), Theorem 1 (variance against K), and the module's advantages."""

from __future__ import annotations

import itertools

import pytest
import torch
from tensordict import TensorDict

from marl_lightning import PERLAIPPO, PERLAMAPPO
from marl_lightning.core import keys
from marl_lightning.models import JointActionQCritic, build_actor
from marl_lightning.objectives.perla import exact_marginal_q, marginal_q, sample_joint_actions
from tests.conftest import make_spec, synthetic_batch

N_AGENTS, N_ACTIONS = 3, 2


def _setup(batch: int = 16, seed: int = 0):
    torch.manual_seed(seed)
    spec = make_spec(n_agents=N_AGENTS, observation_dim=4, continuous=False)
    spec = type(spec)(**{**spec.__dict__, "action_dim": N_ACTIONS})
    actor = build_actor(spec, [8], share_params=False)
    critic = JointActionQCritic(spec, [16], share_params=False, centralised=True)
    td = synthetic_batch(spec, batch=batch, generator_seed=seed)
    with torch.no_grad():
        actor(td)
        probs = torch.softmax(td[keys.LOGITS], -1)  # [B, A, n]
    return actor, critic, td, probs


def test_each_agent_sees_its_own_action_first_then_the_others_in_order():
    _, critic, _, _ = _setup()
    own = torch.tensor([[10.0], [11.0], [12.0]])  # [A, e=1]
    others = torch.tensor([[20.0], [21.0], [22.0]])
    arranged = critic.arrange(own, others)  # [A, A]
    assert arranged.tolist() == [[10, 21, 22], [11, 20, 22], [12, 20, 21]]


def test_a_shared_critic_knows_whose_action_comes_first():
    """With one network for all agents and the same global context, Q_i(s, a) = 1[a_0 = 0] for every i
    (a team value that depends on agent 0's action) is fittable only if the input says which agent i is:
    agent 0's input starts with a_0, agent 1's with a_1."""
    torch.manual_seed(0)
    spec = make_spec(n_agents=N_AGENTS, observation_dim=4, continuous=False)
    spec = type(spec)(**{**spec.__dict__, "action_dim": N_ACTIONS})
    critic = JointActionQCritic(spec, [32, 32], share_params=True, centralised=True)
    joint = torch.tensor(list(itertools.product(range(N_ACTIONS), repeat=N_AGENTS)))  # [8, A]
    actions = critic.encode(joint)  # [8, A, n]
    context = torch.zeros(len(joint), N_AGENTS, N_AGENTS * 4)  # [8, A, C]: the same for every agent
    target = (joint[:, :1] == 0).to(torch.float32).expand(-1, N_AGENTS).unsqueeze(-1)  # [8, A, 1]
    optimiser = torch.optim.Adam(critic.parameters(), lr=1e-2)
    for _ in range(300):
        optimiser.zero_grad()
        loss = (critic(context, actions, actions) - target).pow(2).mean()
        loss.backward()
        optimiser.step()
    assert float((critic(context, actions, actions) - target).abs().max()) < 0.1


def test_exact_marginal_q_equals_a_brute_force_sum():
    _, critic, td, probs = _setup(batch=4)
    context, own = critic.context(td), critic.encode(td[keys.ACTION])
    exact = exact_marginal_q(critic, context, own, probs)  # [4, A, 1]
    with torch.no_grad():
        for b, i in itertools.product(range(4), range(N_AGENTS)):
            total = 0.0
            others_idx = [j for j in range(N_AGENTS) if j != i]
            for combo in itertools.product(range(N_ACTIONS), repeat=N_AGENTS - 1):
                joint = td[keys.ACTION][b].clone()
                p = 1.0
                for j, a in zip(others_idx, combo, strict=True):
                    joint[j] = a
                    p *= float(probs[b, j, a])
                q = critic(context[b], own[b], critic.encode(joint))[i, 0]
                total += p * float(q)
            assert float(exact[b, i, 0]) == pytest.approx(total, abs=1e-5)


def test_marginal_q_converges_to_the_exact_expectation_as_k_grows():
    actor, critic, td, probs = _setup(batch=32)
    context, own = critic.context(td), critic.encode(td[keys.ACTION])
    with torch.no_grad():
        exact = exact_marginal_q(critic, context, own, probs)
        errors = {}
        for k in (1, 16, 4096):
            torch.manual_seed(1)
            q_hat, _ = marginal_q(critic, context, own, sample_joint_actions(actor, td, k, critic))
            errors[k] = float((q_hat - exact).abs().mean())
    assert errors[4096] < errors[16] < errors[1]
    assert errors[4096] < 2e-3


def test_k_samples_and_one_sample_have_the_same_mean_theorem_3():
    actor, critic, td, _ = _setup(batch=256)
    context, own = critic.context(td), critic.encode(td[keys.ACTION])
    with torch.no_grad():
        torch.manual_seed(2)
        single = [marginal_q(critic, context, own, sample_joint_actions(actor, td, 1, critic))[0].mean()
                  for _ in range(200)]
        many = marginal_q(critic, context, own, sample_joint_actions(actor, td, 64, critic))[0].mean()
    single = torch.stack(single)
    standard_error = single.std() / len(single) ** 0.5
    assert abs(float(single.mean() - many)) < 4 * float(standard_error) + 1e-4


def test_variance_falls_with_k_as_theorem_1_predicts():
    actor, critic, td, probs = _setup(batch=512)
    context, own = critic.context(td), critic.encode(td[keys.ACTION])
    with torch.no_grad():
        exact = exact_marginal_q(critic, context, own, probs)  # Q̃ [B, A, 1]
        torch.manual_seed(3)
        _, single = marginal_q(critic, context, own, sample_joint_actions(actor, td, 64, critic))
        var_q, var_exact = float(single.var()), float(exact.var())  # Var(Q), Var(Q̃) over (s, a_i, samples)
        for k in (1, 4, 16):
            q_hat, _ = marginal_q(critic, context, own, sample_joint_actions(actor, td, k, critic))
            predicted = var_q / k + (k - 1) / k * var_exact
            assert float(q_hat.var()) == pytest.approx(predicted, rel=0.15), k


@pytest.mark.parametrize("share", [False, True], ids=["per-agent", "shared"])
def test_the_context_part_computed_once_equals_one_layer_over_context_and_actions(share):
    """The split first layer is one linear layer over [c; x]: Q of K samples at once (context computed
    once, broadcast) equals Q of each sample with the context repeated, and equals the plain MLP built from
    the concatenated weights; its initial weights follow nn.Linear's law for the whole input."""
    torch.manual_seed(0)
    spec = make_spec(n_agents=N_AGENTS, observation_dim=4, continuous=True)
    critic = JointActionQCritic(spec, [16, 8], share_params=share, centralised=True)
    context = torch.randn(5, N_AGENTS, N_AGENTS * 4)  # [B, A, C]
    own = torch.randn(5, N_AGENTS, spec.action_dim)  # [B, A, e]
    samples = torch.randn(7, 5, N_AGENTS, spec.action_dim)  # [K, B, A, e]
    at_once = critic(context, own.unsqueeze(0), samples)  # [K, B, A, 1]
    one_by_one = torch.stack([critic(context, own, samples[k]) for k in range(7)])
    torch.testing.assert_close(at_once, one_by_one, rtol=1e-5, atol=1e-6)
    # the same function as one Linear over the concatenated input, per agent
    weights = {name: p for name, p in critic.named_parameters()}
    w_c = next(p for name, p in weights.items() if name.startswith("context_layer") and p.dim() >= 2)
    b_c = next(p for name, p in weights.items() if name.startswith("context_layer") and p.dim() < w_c.dim())
    w_x = next(p for name, p in weights.items() if name.startswith("action_layer"))
    joint = critic.arrange(own, own)  # [B, A, A·e]
    if share:
        joint = torch.cat([joint, torch.eye(N_AGENTS).expand(5, -1, -1)], -1)
        w = torch.cat([w_c, w_x], -1)  # [H, C + X]
        first = torch.cat([context, joint], -1) @ w.T + b_c
    else:
        w = torch.cat([w_c, w_x], -1)  # [A, H, C + X]
        first = torch.einsum("bai,ahi->bah", torch.cat([context, joint], -1), w) + b_c
    expected = critic.rest(torch.tanh(first))  # [B, A, 1]
    torch.testing.assert_close(critic(context, own, own), expected, rtol=1e-5, atol=1e-6)
    bound = 1.0 / critic.n_inputs**0.5
    first_layer = torch.cat([w_c.flatten(), w_x.flatten(), b_c.flatten()])
    assert first_layer.abs().max() <= bound and first_layer.abs().max() > 0.9 * bound


@pytest.mark.parametrize("algorithm", [PERLAMAPPO, PERLAIPPO])
def test_k_is_a_hyperparameter_and_the_critic_sees_the_joint_action(algorithm):
    spec = make_spec(n_agents=3, observation_dim=5, continuous=False)
    module = algorithm(env_spec=spec, n_samples=4, critic_cells=[8])
    assert module.loss_module.n_samples == 4
    inputs = module.critic.n_inputs
    context = 3 * 5 if algorithm is PERLAMAPPO else 5
    shared = module.hparams.share_critic_params
    assert inputs == context + 3 * spec.action_dim + (3 if shared else 0)  # + the agent's one-hot index
    with pytest.raises(Exception, match="n_samples"):
        algorithm(env_spec=spec, n_samples=0)


@pytest.mark.simulator
@pytest.mark.parametrize("advantage", ["td", "gae", "q"])
def test_module_advantages_on_a_real_batch(advantage):
    from marl_lightning.data.team_signals import expand_team_signals
    from marl_lightning.envs import StochasticGameTask

    torch.manual_seed(0)
    factory = StochasticGameTask(n_states=5, n_agents=3, n_actions=2, horizon=4)
    module = PERLAMAPPO(env_spec=factory.spec(), n_samples=4, advantage=advantage, critic_cells=[16],
                        actor_cells=[16], minibatch_size=8)
    env = factory.make_transformed(6, "cpu", seed=0)
    with torch.no_grad():
        batch = expand_team_signals(env.rollout(4, module.policy), n_agents=3)  # [6, 4]
    stats = module.compute_advantages(batch)
    advantage_ = batch[keys.ADVANTAGE]
    assert advantage_.shape == (6, 4, 3, 1) and torch.isfinite(advantage_).all()
    est = module.marginal_estimates(batch)
    reward = batch[keys.nxt(keys.REWARD)]
    terminal = batch[keys.nxt(keys.TERMINATED)]
    if advantage == "td":  # the last step of each episode (horizon 4) does not bootstrap
        assert terminal[:, -1].all()
        # sampling differs between the two calls; the terminal step's target is the reward alone
        torch.testing.assert_close(batch[keys.VALUE_TARGET][:, -1], reward[:, -1])
    assert set(stats) == {"advantage_var", "q_sample_var"}
    torch.testing.assert_close(stats["advantage_var"], advantage_.var())
    assert est["q_samples"].shape[0] == 4


def _hand_case(kind: str) -> tuple[PERLAMAPPO, TensorDict, dict[str, torch.Tensor]]:
    """One env, T = 3 steps, 2 agents; the episode terminates after step 2. Marginal estimates fixed."""
    module = PERLAMAPPO(env_spec=make_spec(n_agents=2, continuous=False), gamma=0.5, lmbda=0.5,
                        n_samples=2, actor_cells=[4], critic_cells=[4], minibatch_size=3, advantage=kind)
    reward = torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1, 1).expand(1, 3, 2, 1)  # the team reward
    terminated = torch.tensor([False, False, True]).view(1, 3, 1, 1).expand(1, 3, 2, 1)
    batch = TensorDict(
        {"next": TensorDict({keys.REWARD: reward.clone(), keys.DONE: terminated.clone(),
                             keys.TERMINATED: terminated.clone(),
                             keys.ROOT_DONE: terminated[:, :, 0].clone()}, batch_size=[1, 3])},
        batch_size=[1, 3],
    )
    est = {  # agent 0, agent 1 per step
        "q": torch.tensor([[3.0, 1.0], [2.0, 0.0], [5.0, 1.0]]).view(1, 3, 2, 1),
        "v": torch.tensor([[2.0, 1.0], [1.0, 1.0], [3.0, 2.0]]).view(1, 3, 2, 1),
        "next_v": torch.tensor([[1.0, 1.0], [3.0, 2.0], [9.0, 9.0]]).view(1, 3, 2, 1),
        "next_q": torch.tensor([[2.0, 0.0], [5.0, 1.0], [9.0, 9.0]]).view(1, 3, 2, 1),
        "q_samples": torch.zeros(2, 1, 3, 2, 1),
    }
    return module, batch, est


@pytest.mark.parametrize("kind", ["td", "gae", "q"])
def test_td_gae_and_q_advantages_against_a_hand_computed_case(kind, monkeypatch):
    module, batch, est = _hand_case(kind)
    monkeypatch.setattr(module, "marginal_estimates", lambda _: est)
    module.compute_advantages(batch)
    # y_t = r_t + γ (1 − terminated_t) Q̂(s_{t+1}, a_{t+1}) with γ = 0.5 (Algorithm 1, line 6)
    target = torch.tensor([[1 + 0.5 * 2.0, 1 + 0.5 * 0.0], [2 + 0.5 * 5.0, 2 + 0.5 * 1.0], [4.0, 4.0]])
    if kind == "td":  # y_t − V̂(s_t)
        expected = target - est["v"].view(3, 2)
    elif kind == "q":  # Q̂(s_t, a_t) − V̂(s_t)
        expected = torch.tensor([[1.0, 0.0], [1.0, -1.0], [2.0, -1.0]])
    else:  # GAE over δ_t = r_t + γ(1 − term) V̂(s_{t+1}) − V̂(s_t), γλ = 0.25
        delta = torch.tensor([[1 + 0.5 * 1 - 2, 1 + 0.5 * 1 - 1], [2 + 0.5 * 3 - 1, 2 + 0.5 * 2 - 1],
                              [4 - 3, 4 - 2]])
        expected = delta.clone()
        expected[1] += 0.25 * expected[2]
        expected[0] += 0.25 * expected[1]
    torch.testing.assert_close(batch[keys.ADVANTAGE].view(3, 2), expected)
    torch.testing.assert_close(batch[keys.VALUE_TARGET].view(3, 2), target)
