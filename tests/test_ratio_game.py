"""Von Neumann's ratio game (paper 002, Appendix E): specs, exact values, Monte Carlo, CLI runs."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs.utils import check_env_specs, step_mdp
from torchrl.modules import ProbabilisticActor

from marl_lightning.__main__ import cli_main
from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.ratio_game import (
    REWARD_MATRIX,
    STOP_MATRIX,
    VALUE_MAX,
    VALUE_MIN,
    RatioGame,
    RatioGameTask,
    ratio_game_observation,
    ratio_game_value,
)
from tests.conftest import CONF, SMALL_RUN_ARGS

RATIO_GAME_CONFIG = CONF / "env" / "ratio_game.yaml"
JOINT_ACTIONS = [(0, 0), (0, 1), (1, 0), (1, 1)]


def _constant_actions(n_envs: int, a1: int, a2: int) -> torch.Tensor:
    return torch.tensor([a1, a2]).expand(n_envs, 2).clone()  # [B, A]


# ----------------------------------------------------------------- the env


def test_specs_pass_check_env_specs_and_match_the_batch_layout():
    env = RatioGame(num_envs=5, max_steps=4, seed=0)
    check_env_specs(env, break_when_any_done="both", seed=0)
    assert env.full_action_spec[keys.ACTION].space.n == 2
    assert env.reset_keys == ["_reset"]
    rollout = env.rollout(7, break_when_any_done=False)  # [B, T]
    assert rollout.batch_size == (5, 7)
    assert rollout.get(keys.GROUP).batch_size == (5, 7, 2)
    observation = rollout[keys.OBSERVATION]
    assert observation.shape == (5, 7, 2, 2) and observation.dtype == torch.float32
    # stateless game: the observation is each agent's one-hot index, at every step
    assert torch.equal(observation, torch.eye(2).expand(5, 7, 2, 2))
    assert torch.equal(observation[0, 0], ratio_game_observation())  # what evaluation_metrics feeds
    action = rollout[keys.ACTION]
    assert action.shape == (5, 7, 2) and action.dtype == torch.long
    reward = rollout[keys.nxt(keys.REWARD)]
    assert reward.shape == (5, 7, 2, 1) and reward.dtype == torch.float32
    # the team reward R[a1, a2], copied to both agents
    expected = REWARD_MATRIX.float()[action[..., 0], action[..., 1]]  # [B, T]
    assert torch.equal(reward, expected[..., None, None].expand(5, 7, 2, 1))
    for name in (keys.ROOT_DONE, keys.ROOT_TERMINATED, "truncated"):
        flag = rollout[keys.nxt(name)]
        assert flag.shape == (5, 7, 1) and flag.dtype == torch.bool, name
    done, terminated, truncated = (rollout[keys.nxt(n)] for n in ("done", "terminated", "truncated"))
    assert torch.equal(done, terminated | truncated)
    assert not (terminated & truncated).any()


@pytest.mark.parametrize(("a1", "a2"), JOINT_ACTIONS)
def test_one_step_pays_R_and_stops_with_probability_S(a1, a2):
    n = 20_000
    env = RatioGame(num_envs=n, max_steps=100, seed=1)
    td = env.reset()
    td.set(keys.ACTION, _constant_actions(n, a1, a2))
    nxt = env.step(td).get(keys.NEXT)
    assert torch.all(nxt[keys.REWARD] == REWARD_MATRIX.float()[a1, a2])
    stop = float(STOP_MATRIX[a1, a2])
    frequency = nxt[keys.ROOT_TERMINATED].float().mean().item()
    standard_error = math.sqrt(stop * (1 - stop) / n)  # 0 when S = 1: then every env must stop
    assert abs(frequency - stop) <= 5 * standard_error + 1e-12
    assert not nxt["truncated"].any()


def test_episodes_are_truncated_at_max_steps_and_partial_resets_restart_the_count():
    n, max_steps, steps = 200, 3, 30
    env = RatioGame(num_envs=n, max_steps=max_steps, seed=2)

    def play_1_1(td):  # S = 0.1: most episodes outlive the cap
        return td.set(keys.ACTION, _constant_actions(n, 1, 1))

    # the rollout resets finished envs through "_reset" (partial resets), as the collector does
    rollout = env.rollout(steps, play_1_1, break_when_any_done=False)  # [B, T]
    done = rollout[keys.nxt(keys.ROOT_DONE)].squeeze(-1)  # [B, T]
    terminated = rollout[keys.nxt(keys.ROOT_TERMINATED)].squeeze(-1)  # [B, T]
    truncated = rollout[keys.nxt("truncated")].squeeze(-1)  # [B, T]
    episode_step = torch.zeros(n, steps, dtype=torch.long)  # steps since the last reset, this one included
    count = torch.zeros(n, dtype=torch.long)
    for t in range(steps):
        count = count + 1
        episode_step[:, t] = count
        count = count.masked_fill(done[:, t], 0)
    assert episode_step.max() == max_steps
    # cut exactly at the cap, unless the stop draw ended the episode there
    assert torch.equal(truncated, (episode_step == max_steps) & ~terminated)
    assert torch.equal(done, terminated | truncated)
    assert truncated.float().mean() > 0.5 * 0.9**3 / 3  # most episodes are truncated, ~1 per 3 steps
    assert 0.05 < terminated.float().mean() < 0.15  # S = 0.1 per step

    # partial reset: env 0 restarts its count, env 1 is at the cap on its next step
    env = RatioGame(num_envs=2, max_steps=2, seed=3)
    td = env.reset()
    td.set(keys.ACTION, _constant_actions(2, 1, 1))
    td = step_mdp(env.step(td))
    td.set("_reset", torch.tensor([[True], [False]]))
    td = env.reset(td)
    td.set(keys.ACTION, _constant_actions(2, 1, 1))
    nxt = env.step(td).get(keys.NEXT)
    assert not nxt["truncated"][0].item()  # env 0: one step since its reset
    assert nxt[keys.ROOT_DONE][1].item()  # env 1: second step, cut unless it stopped by itself


def test_stops_are_drawn_from_the_env_seed():
    def stops(seed: int) -> torch.Tensor:
        env = RatioGame(num_envs=200, max_steps=50, seed=seed)
        td = env.reset()
        flags = []
        for _ in range(5):
            td.set(keys.ACTION, _constant_actions(200, 1, 0))
            td = env.step(td)
            flags.append(td[keys.nxt(keys.ROOT_TERMINATED)])
            td = step_mdp(td)
        return torch.cat(flags, -1)  # [B, 5]

    torch.manual_seed(0)
    first = stops(7)
    torch.manual_seed(1)  # the global RNG plays no part
    assert torch.equal(first, stops(7))
    assert not torch.equal(first, stops(8))


# ----------------------------------------------------------------- the value V = π1ᵀRπ2 / π1ᵀSπ2

E0, E1 = [1.0, 0.0], [0.0, 1.0]


@pytest.mark.parametrize(
    ("pi1", "pi2", "value"),
    [
        (E0, E0, 1.0),  # R = 1, S = 1: one step paying 1 — the optimum
        (E0, E1, 0.5),  # 0.5 / 1
        (E1, E0, -5.0),  # −0.5 / 0.1: ten steps of −0.5 in expectation — the minimum
        (E1, E1, 0.0),  # 0 / 0.1
        # the paper's stationary point (x, y) = (0.5, 0): (0.5·0.5 + 0.5·0) / (0.5·1 + 0.5·0.1) = 5/11 ≈ 0.46
        ([0.5, 0.5], E1, 5 / 11),
        # uniform: r̄ = (1 + 0.5 − 0.5 + 0) / 4 = 0.25, s̄ = (1 + 1 + 0.1 + 0.1) / 4 = 0.55
        ([0.5, 0.5], [0.5, 0.5], 5 / 11),
        # x = 0.8, y = 0.3: (0.24 + 0.5·0.8·0.7 − 0.5·0.2·0.3 + 0) / (0.8 + 0.2·0.1) = 0.49 / 0.82
        ([0.8, 0.2], [0.3, 0.7], 0.49 / 0.82),
    ],
)
def test_value_on_hand_computed_cases(pi1, pi2, value):
    result = ratio_game_value(torch.tensor(pi1, dtype=torch.float64), torch.tensor(pi2, dtype=torch.float64))
    assert result.shape == ()
    assert result.item() == pytest.approx(value, abs=1e-12)


def test_value_is_vectorised_and_its_range_over_a_grid_is_minus_five_to_one():
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    pi1 = torch.stack([x, 1 - x], -1)[:, None, :]  # [101, 1, 2]
    pi2 = torch.stack([x, 1 - x], -1)[None, :, :]  # [1, 101, 2]
    grid = ratio_game_value(pi1, pi2)  # [101, 101]: V(x_i, y_j)
    assert grid.shape == (101, 101)
    assert grid[33, 71].item() == ratio_game_value(pi1[33, 0], pi2[0, 71]).item()
    assert grid.max().item() == pytest.approx(VALUE_MAX, abs=1e-12)
    assert grid.min().item() == pytest.approx(VALUE_MIN, abs=1e-12)
    assert divmod(int(grid.argmax()), 101) == (100, 100)  # only at x = y = 1
    assert divmod(int(grid.argmin()), 101) == (0, 100)  # x = 0, y = 1
    with pytest.raises(ValueError, match="last dimension of 2"):
        ratio_game_value(torch.ones(3), torch.ones(2))


@pytest.mark.parametrize(
    ("pi1", "pi2"),
    [
        ([0.5, 0.5], [0.5, 0.5]),
        ([0.8, 0.2], [0.3, 0.7]),
        ([0.2, 0.8], [0.6, 0.4]),
        ([0.05, 0.95], [0.9, 0.1]),  # V < 0, episodes of ~9 steps
    ],
)
def test_value_matches_a_monte_carlo_estimate(pi1, pi2):
    n = 20_000
    # Truncation is negligible: every step stops with probability >= 0.1, so P(an episode is cut) <=
    # 0.9^300 < 1e-13 per env.
    max_steps = 300
    env = RatioGame(num_envs=n, max_steps=max_steps, seed=4)
    generator = torch.Generator().manual_seed(5)
    probs = torch.tensor([pi1, pi2])  # [A, 2]
    td = env.reset()
    returns = torch.zeros(n, dtype=torch.float64)
    lengths = torch.zeros(n)
    alive = torch.ones(n, dtype=torch.bool)
    while alive.any():
        action = torch.multinomial(probs, n, replacement=True, generator=generator).T  # [B, A]
        td = env.step(td.set(keys.ACTION, action))
        returns += alive * td[keys.nxt(keys.REWARD)][:, 0, 0].double()  # undiscounted, first episode only
        lengths += alive
        alive &= ~td[keys.nxt(keys.ROOT_DONE)].squeeze(-1)
        td = step_mdp(td)
    assert lengths.max() < max_steps
    value = ratio_game_value(probs[0].double(), probs[1].double()).item()
    stop = (probs[0].double() @ STOP_MATRIX @ probs[1].double()).item()
    # 20,000 i.i.d. episode returns: the mean is within 4.5 standard errors of V except with probability
    # ~7e-6 (the returns' tails are geometric, so the normal approximation holds at this n); seeded anyway.
    standard_error = returns.std().item() / math.sqrt(n)
    assert abs(returns.mean().item() - value) < 4.5 * standard_error
    # and the episode length is geometric with mean 1 / (π1ᵀ S π2)
    assert abs(lengths.mean().item() - 1 / stop) < 4.5 * lengths.std().item() / math.sqrt(n)


# ----------------------------------------------------------------- evaluation metric


class _FixedLogits(nn.Module):
    """Agent i's logits are row i of a parameter, whatever the observation."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*observation.shape[:-1], 2)  # [B, A, 2]


def test_evaluation_metric_is_the_exact_value_of_the_stochastic_policy():
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])  # agent 0 mostly plays 0, agent 1 mostly 1
    policy = ProbabilisticActor(
        TensorDictModule(_FixedLogits(logits), in_keys=[keys.OBSERVATION], out_keys=[keys.LOGITS]),
        in_keys=[keys.LOGITS],
        out_keys=[keys.ACTION],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
    )
    metrics = RatioGameTask().evaluation_metrics(policy, return_mean=123.0)
    probs = logits.softmax(-1)
    expected = ratio_game_value(probs[0], probs[1]).item()
    assert metrics == {"eval/ratio_game_value": pytest.approx(expected, abs=1e-6)}
    # agent 0 is the row player: swapping the agents changes the value
    assert abs(ratio_game_value(probs[1], probs[0]).item() - expected) > 0.1
    with pytest.raises(TypeError, match="get_dist"):
        RatioGameTask().evaluation_metrics(nn.Linear(2, 2), return_mean=0.0)


# ----------------------------------------------------------------- configuration


@pytest.mark.parametrize("max_steps", [0, -3, 2.5, True])
def test_bad_max_steps_is_a_config_error_naming_the_field(max_steps):
    with pytest.raises(ConfigError, match=r"data\.env\.max_steps") as error:
        RatioGameTask(max_steps=max_steps)
    assert repr(max_steps) in str(error.value)
    assert "--data.env.init_args.max_steps" in str(error.value)


def test_bad_max_steps_on_the_command_line_is_reported_in_one_paragraph(in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            ["fit", "--config", str(CONF / "mappo.yaml"), "--config", str(RATIO_GAME_CONFIG),
             "--data.env.init_args.max_steps", "0"]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "data.env.max_steps" in err and "got 0" in err


def test_the_config_replaces_the_vmas_settings(in_tmp):
    cli = MarlCLI(
        args=["--config", str(CONF / "mappo.yaml"), "--config", str(RATIO_GAME_CONFIG), "--trainer.logger",
              "false"],
        run=False,
    )
    # jsonargparse drops the old class's init_args when class_path changes: no VMAS scenario leaks in
    assert dict(vars(cli.config.data.env.init_args)) == {"max_steps": 100}
    assert isinstance(cli.datamodule.env_factory, RatioGameTask)
    assert cli.datamodule.frames_per_batch % cli.datamodule.num_envs == 0
    assert cli.datamodule.frames_per_batch % cli.model.hparams.minibatch_size == 0
    spec = cli.model.env_spec
    assert (spec.n_agents, spec.observation_dim, spec.action_dim, spec.continuous) == (2, 2, 2, False)


# ----------------------------------------------------------------- training through the CLI


@pytest.mark.simulator
@pytest.mark.parametrize("config", ["mappo.yaml", "ippo.yaml"])
def test_two_iterations_log_the_exact_value(config, in_tmp):
    cli = MarlCLI(
        args=[
            "fit",
            "--config",
            str(CONF / config),
            "--config",
            str(RATIO_GAME_CONFIG),
            *SMALL_RUN_ARGS,
            "--trainer.logger",
            "false",
            "--trainer.val_check_interval",
            "1",
            "--model.total_frames",
            "400",
        ]
    )
    assert int(cli.model.iterations) == 2
    assert isinstance(cli.datamodule.env_factory, RatioGameTask)
    assert cli.datamodule.env_factory.max_steps == 20
    metrics = cli.trainer.callback_metrics
    value = float(metrics["eval/ratio_game_value"])
    assert VALUE_MIN <= value <= VALUE_MAX
    # the logged figure is the exact value of the final (stochastic) joint policy
    expected = cli.datamodule.env_factory.evaluation_metrics(cli.model.policy, 0.0)["eval/ratio_game_value"]
    assert value == pytest.approx(expected, abs=1e-6)
    assert torch.isfinite(metrics["eval/return_mean"]) and torch.isfinite(metrics["loss/policy"])
