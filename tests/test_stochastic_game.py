"""The cooperative stochastic game (DPO paper, Section 4.1): tables, dynamics, the DP optimum, CLI runs."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.base import spec_from_env
from marl_lightning.envs.stochastic_game import (
    DEFAULT_HORIZON,
    GameSizes,
    StochasticGame,
    StochasticGameTask,
    joint_action_index,
)
from tests.conftest import CONF

SMALL = {"n_states": 5, "n_agents": 3, "n_actions": 3, "horizon": 10, "n_successors": 3}


def _small(batch: int | tuple[int, ...] = 8, seed: int = 0, **overrides) -> StochasticGame:
    batch_size = (batch,) if isinstance(batch, int) else batch
    return StochasticGame(GameSizes(**{**SMALL, **overrides}, game_seed=seed), batch_size=batch_size)


def _decode(observation: torch.Tensor, n_states: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(state, time step) from agent 0's observation. Shapes: [*B, A, F] -> [*B], [*B]."""
    obs = observation[..., 0, :]  # [*B, F]
    return obs[..., :n_states].argmax(-1), obs[..., n_states:].argmax(-1)


def _constant_action_policy(action: int, n_agents: int):
    def policy(td: TensorDict) -> TensorDict:
        shape = (*td.batch_size, n_agents)
        return td.set(keys.ACTION, torch.full(shape, action, dtype=torch.long, device=td.device))

    return policy


# ----------------------------------------------------------------------------- specs and tables
@pytest.mark.parametrize("batch", [(4,), (2, 3)], ids=["flat", "2d"])
def test_check_env_specs_passes(batch):
    check_env_specs(_small(batch), seed=0)


def test_default_game_passes_check_env_specs_and_has_the_paper_sizes():
    env = StochasticGame(batch_size=[2])
    check_env_specs(env, seed=0)
    spec = spec_from_env(env)
    assert (spec.n_agents, spec.action_dim, spec.continuous) == (6, 5, False)
    assert spec.observation_dim == 100 + DEFAULT_HORIZON + 1
    assert env.n_states == 100 and env.horizon == DEFAULT_HORIZON


def test_tables_have_the_documented_shapes_dtypes_and_ranges():
    env = StochasticGame(batch_size=[1])
    s, j, k = 100, 5**6, 3
    assert env.rewards.shape == (s, j) and env.rewards.dtype == torch.float32
    assert env.next_states.shape == (s, j, k) and env.next_states.dtype == torch.long
    assert env.next_probs.shape == (s, j, k) and env.next_probs.dtype.is_floating_point
    assert env.initial_probs.shape == (s,)
    assert isinstance(env.horizon, int)
    assert float(env.rewards.min()) >= 0.0 and float(env.rewards.max()) <= 1.0
    torch.testing.assert_close(env.next_probs.sum(-1), torch.ones(s, j), rtol=0, atol=1e-5)
    assert float(env.next_probs.min()) >= 0.0
    torch.testing.assert_close(env.initial_probs.sum(), torch.tensor(1.0))
    assert int(env.next_states.min()) >= 0 and int(env.next_states.max()) < s
    # successors of a (state, joint action) are distinct states
    ordered = env.next_states.sort(-1).values
    assert (ordered[..., 1:] != ordered[..., :-1]).all()
    # every state is someone's successor (the draw covers the state space)
    assert torch.bincount(env.next_states.flatten(), minlength=s).min() > 0


def test_same_seed_same_game_other_seed_another():
    a, b, c = _small(seed=3), _small(seed=3), _small(seed=4)
    for name in ("rewards", "next_states", "next_probs", "initial_probs"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.rewards, c.rewards)
    assert not torch.equal(a.next_states, c.next_states)
    assert not torch.equal(a.next_probs, c.next_probs)
    # the game does not depend on the batch size or the sampling seed
    d = _small(batch=64, seed=3)
    d.set_seed(123)
    assert torch.equal(a.rewards, d.rewards) and torch.equal(a.next_states, d.next_states)


def test_joint_action_index_agent_zero_most_significant():
    actions = torch.tensor([[1, 2, 3], [0, 0, 1], [4, 4, 4], [0, 0, 0]])  # [B, A], 5 actions
    expected = torch.tensor([1 * 25 + 2 * 5 + 3, 1, 124, 0])
    assert torch.equal(joint_action_index(actions, 5), expected)
    # a bijection between action tuples (in lexicographic order) and 0..n^A-1
    every = torch.tensor(list(itertools.product(range(3), repeat=4)))  # [81, 4]
    assert torch.equal(joint_action_index(every, 3), torch.arange(81))


# ----------------------------------------------------------------------------- dynamics
def test_steps_follow_the_tables():
    env = _small(batch=256, seed=1)
    env.set_seed(0)
    torch.manual_seed(0)
    td = env.reset()
    state, t = _decode(td[keys.OBSERVATION], env.n_states)
    assert (t == 0).all() and not td[keys.ROOT_DONE].any()
    # identical observations for every agent
    assert torch.equal(td[keys.OBSERVATION], td[keys.OBSERVATION][:, :1].expand_as(td[keys.OBSERVATION]))
    for step in range(1, env.horizon + 1):
        td = env.rand_action(td)
        joint = joint_action_index(td[keys.ACTION], env.n_actions)  # [B]
        td = env.step(td)
        reward = td[keys.nxt(keys.REWARD)]  # [B, A, 1]
        assert reward.shape == (256, env.n_agents, 1)
        torch.testing.assert_close(reward, env.rewards[state, joint].view(-1, 1, 1).expand_as(reward))
        next_state, next_t = _decode(td[keys.nxt(keys.OBSERVATION)], env.n_states)
        assert (next_t == step).all()
        reachable = (env.next_states[state, joint] == next_state.unsqueeze(-1)) & (
            env.next_probs[state, joint] > 0
        )  # [B, k]
        assert reachable.any(-1).all()
        done = td[keys.nxt(keys.ROOT_DONE)]
        assert done.shape == (256, 1) and torch.equal(done, td[keys.nxt(keys.ROOT_TERMINATED)])
        assert bool(done.all()) == (step == env.horizon) and bool(done.any()) == (step == env.horizon)
        td = td[keys.NEXT].clone()
        state = next_state


def test_successor_frequencies_match_next_probs():
    n = 40_000
    env = _small(batch=n, seed=2, n_successors=3)
    env.set_seed(5)
    td = env.reset()
    start, _ = _decode(td[keys.OBSERVATION], env.n_states)  # [N]
    td = env.step(_constant_action_policy(1, env.n_agents)(td))
    nxt, _ = _decode(td[keys.nxt(keys.OBSERVATION)], env.n_states)
    joint = joint_action_index(torch.ones(1, env.n_agents, dtype=torch.long), env.n_actions).item()
    for s in range(env.n_states):
        from_s = nxt[start == s]
        expected = torch.zeros(env.n_states).index_add_(
            0, env.next_states[s, joint], env.next_probs[s, joint]
        )
        observed = torch.bincount(from_s, minlength=env.n_states).float() / from_s.numel()
        # binomial standard error ≤ 0.5 / sqrt(~8000) ≈ 0.006
        torch.testing.assert_close(observed, expected, rtol=0, atol=0.03)


def test_initial_states_are_uniform():
    env = _small(batch=50_000, seed=0)
    env.set_seed(1)
    start, _ = _decode(env.reset()[keys.OBSERVATION], env.n_states)
    observed = torch.bincount(start, minlength=env.n_states).float() / start.numel()
    torch.testing.assert_close(observed, env.initial_probs, rtol=0, atol=0.01)


def test_partial_reset_resets_only_the_marked_envs():
    env = _small(batch=6, seed=0)
    env.set_seed(0)
    td = env.reset()
    policy = _constant_action_policy(2, env.n_agents)
    for _ in range(3):
        td = env.step(policy(td))[keys.NEXT].clone()
    before_state, before_t = _decode(td[keys.OBSERVATION], env.n_states)
    reset = torch.tensor([True, False, True, False, False, False]).unsqueeze(-1)  # [B, 1]
    td.set("_reset", reset)
    after = env.reset(td)
    state, t = _decode(after[keys.OBSERVATION], env.n_states)
    assert torch.equal(t, torch.tensor([0, 3, 0, 3, 3, 3]))
    assert torch.equal(state[~reset.squeeze(-1)], before_state[~reset.squeeze(-1)])
    assert (before_t == 3).all() and not after[keys.ROOT_DONE].any()
    # the un-reset envs keep counting towards the horizon
    td = after.exclude("_reset")
    for _ in range(env.horizon - 3):
        td = env.step(policy(td))
        done = td[keys.nxt(keys.ROOT_DONE)].squeeze(-1)
        td = td[keys.NEXT].clone()
    assert torch.equal(done, ~reset.squeeze(-1))


def test_set_seed_makes_rollouts_reproducible():
    def rollout(seed: int) -> torch.Tensor:
        env = _small(batch=16, seed=0)
        env.set_seed(seed)
        policy = _constant_action_policy(0, env.n_agents)  # the policy draws nothing: the env's RNG only
        return env.rollout(env.horizon, policy, break_when_any_done=False)[keys.nxt(keys.OBSERVATION)]

    assert torch.equal(rollout(7), rollout(7))
    assert not torch.equal(rollout(7), rollout(8))


def test_collector_style_auto_reset_starts_new_episodes():
    env = _small(batch=4, seed=0)
    env.set_seed(0)
    rollout = env.rollout(3 * env.horizon, break_when_any_done=False)  # [B, 3H], resets when done
    _, t = _decode(rollout[keys.OBSERVATION], env.n_states)
    assert torch.equal(t[0], torch.arange(env.horizon).repeat(3))
    assert rollout[keys.nxt(keys.ROOT_DONE)].squeeze(-1).sum(-1).eq(3).all()


# ----------------------------------------------------------------------------- exact values
def _brute_force_return(env: StochasticGame, policy: tuple[int, ...]) -> float:
    """Expected return of a deterministic (t, s) -> joint action policy, by enumerating trajectories."""
    s_count, horizon = env.n_states, env.horizon
    rewards = env.rewards.double().tolist()
    successors = env.next_states.tolist()
    probs = env.next_probs.double().tolist()

    def value(s: int, t: int) -> float:
        if t == horizon:
            return 0.0
        j = policy[t * s_count + s]
        return rewards[s][j] + sum(p * value(s2, t + 1) for s2, p in zip(successors[s][j], probs[s][j],
                                                                            strict=True))

    return sum(mu * value(s, 0) for s, mu in enumerate(env.initial_probs.double().tolist()))


@pytest.mark.parametrize("game_seed", [0, 1, 2])
def test_dp_optimum_equals_exhaustive_search_over_deterministic_policies(game_seed):
    env = StochasticGame(GameSizes(n_states=2, n_agents=2, n_actions=2, horizon=3, n_successors=2,
                                   game_seed=game_seed))
    n_joint = 4
    policies = list(itertools.product(range(n_joint), repeat=env.n_states * env.horizon))  # 4^6 = 4096
    returns = [_brute_force_return(env, policy) for policy in policies]
    assert env.optimal_return() == pytest.approx(max(returns), abs=1e-12)
    # policy_return (used below for the uniform policy) agrees with the enumeration on deterministic policies
    for index in (0, 1234, 4095, returns.index(max(returns))):
        one_hot = torch.nn.functional.one_hot(torch.tensor(policies[index]), n_joint).view(3, 2, n_joint)
        assert env.policy_return(one_hot) == pytest.approx(returns[index], abs=1e-12)
    # and a stochastic policy is the mixture of the deterministic ones: uniform = mean over all policies
    assert env.policy_return(torch.full((2, n_joint), 1 / n_joint)) == pytest.approx(
        sum(returns) / len(returns), abs=1e-12
    )


@pytest.mark.parametrize("policy_name", ["uniform", "all_zero"])
def test_monte_carlo_return_matches_the_exact_expectation(policy_name):
    n = 4000
    env = _small(batch=n, seed=3)
    env.set_seed(11)
    torch.manual_seed(11)
    n_joint = env.n_actions**env.n_agents
    if policy_name == "uniform":
        policy, joint_policy = None, torch.full((env.n_states, n_joint), 1.0 / n_joint)  # rand_action
    else:
        policy = _constant_action_policy(0, env.n_agents)
        joint_policy = torch.nn.functional.one_hot(torch.zeros(env.n_states, dtype=torch.long), n_joint)
    rollout = env.rollout(env.horizon, policy, break_when_any_done=False)  # [N, H]
    assert rollout[keys.nxt(keys.ROOT_DONE)][:, -1].all()
    returns = rollout[keys.nxt(keys.REWARD)][..., 0, 0].sum(-1)  # [N], agent 0 = the team
    exact = env.policy_return(joint_policy)
    standard_error = float(returns.std()) / n**0.5
    assert abs(float(returns.mean()) - exact) < 4 * standard_error + 1e-9
    assert exact < env.optimal_return()


def test_default_optimum_bounds_the_uniform_policy():
    env = StochasticGame()
    n_joint = 5**6
    optimum = env.optimal_return()
    uniform = env.policy_return(torch.full((100, n_joint), 1.0 / n_joint))
    # rewards are U[0, 1): a uniform policy earns about 1/2 a step, the best joint action nearly 1
    assert uniform == pytest.approx(0.5 * env.horizon, rel=0.02)
    assert uniform < optimum <= env.horizon


# ----------------------------------------------------------------------------- the factory and the CLI
def test_factory_builds_the_seeded_game_and_reports_the_gap():
    task = StochasticGameTask(**SMALL, game_seed=4)
    assert task.name == "stochastic_game" and task.max_steps == SMALL["horizon"]
    assert task.hparams() == {**SMALL, "game_seed": 4}
    env = task.make(3, "cpu", seed=9)
    assert env.batch_size == (3,) and torch.equal(env.rewards, _small(seed=4).rewards)
    spec = task.spec()
    assert (spec.n_agents, spec.action_dim, spec.observation_dim) == (3, 3, 5 + 10 + 1)
    assert spec.name == "stochastic_game"
    # make's seed drives the sampling only: same seed, same episode
    first = task.make(3, "cpu", seed=9).reset()[keys.OBSERVATION]
    assert torch.equal(first, env.reset()[keys.OBSERVATION])
    optimum = env.optimal_return()
    metrics = task.evaluation_metrics(torch.nn.Identity(), 3.0)
    assert metrics == {"eval/optimality_gap": pytest.approx(optimum - 3.0)}


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_states", 0), ("n_agents", 0), ("n_actions", 1), ("horizon", 0), ("n_successors", 0),
     ("game_seed", -1)],
)
def test_bad_settings_raise_a_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"data\.env\.{field}.*got {value}\b"):
        StochasticGameTask(**{field: value})


def test_more_successors_than_states_and_oversized_tables_are_config_errors():
    with pytest.raises(ConfigError, match=r"data\.env\.n_successors \(4\).*data\.env\.n_states \(3\)"):
        StochasticGameTask(n_states=3, n_successors=4)
    with pytest.raises(ConfigError, match=r"data\.env: .*5\^12.*Reduce data\.env\.n_agents"):
        StochasticGameTask(n_agents=12)


def _fit_small(tmp: Path, config: str) -> MarlCLI:
    horizon = 10
    return MarlCLI(
        args=[
            "fit",
            "--config", str(CONF / config),
            "--config", str(CONF / "env" / "stochastic_game.yaml"),
            "--data.env.init_args.n_states", "10",
            "--data.env.init_args.n_agents", "3",
            "--data.env.init_args.n_actions", "3",
            "--data.env.init_args.horizon", str(horizon),
            "--data.num_envs", "10",
            "--data.frames_per_batch", str(10 * horizon),
            "--model.total_frames", str(2 * 10 * horizon),
            "--data.eval_episodes", "4",
            "--model.init_args.minibatch_size", "50",
            "--model.init_args.num_epochs", "2",
            "--model.init_args.actor_cells", "[32, 32]",
            "--model.init_args.critic_cells", "[32, 32]",
            "--trainer.val_check_interval", "1",
            "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--trainer.callbacks.init_args.dirpath", str(tmp / config),
            "--seed_everything", "0",
        ]
    )  # fmt: skip


@pytest.mark.simulator
@pytest.mark.parametrize(("config", "algorithm"), [("mappo.yaml", "MAPPO"), ("ippo.yaml", "IPPO")])
def test_algorithm_trains_on_the_game_and_logs_the_optimality_gap(config, algorithm, in_tmp):
    cli = _fit_small(in_tmp, config)
    assert type(cli.model).__name__ == algorithm
    assert int(cli.model.iterations) == 2 and int(cli.model.frames) == 200
    factory = cli.datamodule.env_factory
    assert isinstance(factory, StochasticGameTask)
    assert (factory.n_states, factory.n_agents, factory.n_actions) == (10, 3, 3)
    metrics = cli.trainer.callback_metrics
    gap = float(metrics["eval/optimality_gap"])
    assert gap >= -1e-6
    assert gap == pytest.approx(factory.optimal_return() - float(metrics["eval/return_mean"]), abs=1e-4)
    assert torch.isfinite(metrics["loss/policy"])
