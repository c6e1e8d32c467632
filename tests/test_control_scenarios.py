"""Line control and circle control (DPO paper App. A.1): specs, matching, reward values, targets, drawing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import vmas
from scipy.optimize import linear_sum_assignment
from torchrl.envs.utils import check_env_specs

from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs import Vmas
from marl_lightning.envs.scenarios import (
    MAX_ENUMERATED_AGENTS,
    SCENARIOS,
    FormationScenario,
    min_cost_assignment,
)
from marl_lightning.envs.vmas import available_scenarios
from tests.conftest import CONF, SMALL_RUN_ARGS, cli_args

NAMES = sorted(name for name, cls in SCENARIOS.items() if issubclass(cls, FormationScenario))
N = 5
OBS_DIM = {"line_control": 2 + 2 + 2 * 2 + 2 * (N - 1), "circle_control": 2 + 2 + 2 + 2 * (N - 1)}


def _vmas_env(name: str, num_envs: int = 3, seed: int = 0, **kwargs):
    """VMAS's own env around our scenario, N agents (the TorchRL wrapper hides what these tests read)."""
    return vmas.make_env(SCENARIOS[name](), num_envs=num_envs, seed=seed, n_agents=N, **kwargs)


def _place(env, positions: torch.Tensor) -> None:
    """Put every agent at ``positions[:, i]`` ([B, N, 2]) at rest."""
    for i, agent in enumerate(env.world.agents):
        agent.set_pos(positions[:, i], batch_index=None)
        agent.set_vel(torch.zeros_like(positions[:, i]), batch_index=None)


def _across_the_line(env) -> torch.Tensor:
    """Unit vectors perpendicular to each env's segment. Shapes: [B, 2]."""
    along = env.world.landmarks[1].state.pos - env.world.landmarks[0].state.pos  # [B, 2]
    normal = torch.stack([-along[:, 1], along[:, 0]], -1)
    return normal / torch.linalg.vector_norm(normal, dim=-1, keepdim=True)


def _zero_step(env):
    """One step with zero force: agents at rest stay where they are."""
    return env.step([torch.zeros(env.num_envs, 2) for _ in env.agents])


# --- registration and specs -------------------------------------------------------------------------


def test_our_scenarios_are_listed_next_to_vmas_ones():
    names = available_scenarios()
    assert {"line_control", "circle_control", "navigation", "balance"} <= set(names)
    assert names == sorted(names)
    with pytest.raises(ConfigError, match="line_contrl"):
        Vmas("line_contrl")


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "discrete"])
@pytest.mark.parametrize("name", NAMES)
def test_check_env_specs_through_the_factory(name, continuous):
    factory = Vmas(name, n_agents=N, continuous_actions=continuous, max_steps=7)
    env = factory.make(4, "cpu", 0)
    check_env_specs(env)
    assert env.observation_spec[keys.OBSERVATION].shape == (4, N, OBS_DIM[name])
    rollout = env.rollout(7, break_when_any_done=False)
    # no termination of our own: only max_steps ends an episode
    done = rollout[keys.nxt(keys.ROOT_DONE)].squeeze(-1)  # [4, 7]
    assert done[:, -1].all() and not done[:, :-1].any()
    # one team reward: every agent gets the same value
    reward = rollout[keys.nxt(keys.REWARD)]  # [4, 7, N, 1]
    assert torch.equal(reward, reward[:, :, :1].expand_as(reward))
    assert (reward <= 0).all()
    spec = factory.spec()
    assert (spec.n_agents, spec.observation_dim, spec.continuous) == (N, OBS_DIM[name], continuous)


def test_unknown_or_bad_scenario_arguments_are_config_errors():
    with pytest.raises(ConfigError, match=r"line_control has no argument\(s\) \['radius'\]"):
        Vmas("line_control", scenario_kwargs={"radius": 0.3}).make(1, "cpu", 0)
    with pytest.raises(ConfigError, match="n_agents must be >= 2"):
        Vmas("line_control", n_agents=1).make(1, "cpu", 0)
    with pytest.raises(ConfigError, match="line_length"):
        Vmas("line_control", scenario_kwargs={"line_length": 2.0}).make(1, "cpu", 0)
    with pytest.raises(ConfigError, match="radius must be > 0"):
        Vmas("circle_control", scenario_kwargs={"radius": 0.0}).make(1, "cpu", 0)


# --- the assignment -------------------------------------------------------------------------------


def _scipy_totals(cost: torch.Tensor) -> torch.Tensor:
    totals = []
    for env_cost in cost.numpy():
        rows, cols = linear_sum_assignment(env_cost)
        totals.append(env_cost[rows, cols].sum())
    return torch.tensor(np.array(totals), dtype=cost.dtype)


@pytest.mark.parametrize("n", range(1, MAX_ENUMERATED_AGENTS + 2))
def test_assignment_is_a_permutation_of_least_total_cost(n):
    g = torch.Generator().manual_seed(n)
    points = torch.rand(64, n, 2, 2, generator=g) * 2 - 1  # agents and targets, uniform in the arena
    cost = torch.cdist(points[:, :, 0], points[:, :, 1])  # [64, n, n]
    assignment = min_cost_assignment(cost)  # [64, n]
    assert assignment.dtype == torch.long and assignment.shape == (64, n)
    assert torch.equal(assignment.sort(-1).values, torch.arange(n).expand(64, n))
    totals = cost.gather(-1, assignment.unsqueeze(-1)).sum((-1, -2))
    torch.testing.assert_close(totals, _scipy_totals(cost))
    if n <= 4:  # brute force over every permutation, written out
        brute = (
            torch.stack(
                [cost[:, torch.arange(n), torch.tensor(p)].sum(-1) for p in itertools.permutations(range(n))],
                -1,
            )
            .min(-1)
            .values
        )
        torch.testing.assert_close(totals, brute)


def test_enumeration_and_scipy_paths_agree():
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(32, 6, 6, generator=g)
    enumerated = min_cost_assignment(cost)
    solved = min_cost_assignment(cost, max_enumerated=0)
    assert torch.equal(enumerated, solved)  # random costs: the optimum is unique


def test_assignment_rejects_a_non_square_cost():
    with pytest.raises(ValueError, match=r"\[B, N, N\]"):
        min_cost_assignment(torch.zeros(2, 3, 4))


# --- targets ----------------------------------------------------------------------------------------


def test_line_targets_are_evenly_spaced_between_the_landmarks():
    env = _vmas_env("line_control", num_envs=200)
    scenario = env.scenario
    start, end = (landmark.state.pos for landmark in env.world.landmarks)
    assert (start.abs() <= 0.25).all()
    assert (end.abs() < 1.0).all()  # the second landmark lies in the arena
    torch.testing.assert_close(torch.linalg.vector_norm(end - start, dim=-1), torch.full((200,), 1.25))
    targets = scenario.target_positions()  # [200, N, 2]
    torch.testing.assert_close(targets[:, 0], start)
    torch.testing.assert_close(targets[:, -1], end)
    gaps = targets.diff(dim=1)  # [200, N-1, 2]: equal steps along one direction
    torch.testing.assert_close(gaps, ((end - start) / (N - 1))[:, None].expand_as(gaps))
    # directions are spread over the circle, not one fixed angle
    angles = torch.atan2(*(end - start).unbind(-1)[::-1])
    assert angles.max() - angles.min() > math.pi


def test_circle_targets_are_evenly_spaced_on_the_circle_and_anchored_at_an_agent():
    env = _vmas_env("circle_control", num_envs=200)
    scenario = env.scenario
    center = env.world.landmarks[0].state.pos  # [200, 2]
    assert (center.abs() <= 0.5).all()
    targets = scenario.target_positions()  # [200, N, 2]
    relative = targets - center[:, None]
    torch.testing.assert_close(torch.linalg.vector_norm(relative, dim=-1), torch.full((200, N), 0.5))
    angle = torch.remainder(torch.atan2(relative[..., 1], relative[..., 0]), 2 * math.pi)
    gaps = torch.remainder(angle.diff(dim=1), 2 * math.pi)  # consecutive slots
    torch.testing.assert_close(gaps, torch.full((200, N - 1), 2 * math.pi / N))
    # the first slot is on the ray of the agent with the smallest polar angle
    agents = scenario.agent_positions() - center[:, None]
    agent_angle = torch.remainder(torch.atan2(agents[..., 1], agents[..., 0]), 2 * math.pi)
    torch.testing.assert_close(angle[:, 0], agent_angle.min(-1).values)


def test_reset_of_one_env_leaves_the_others():
    env = _vmas_env("line_control", num_envs=4)
    before = [landmark.state.pos.clone() for landmark in env.world.landmarks]
    agents_before = env.scenario.agent_positions().clone()
    env.reset_at(2)
    for landmark, old in zip(env.world.landmarks, before, strict=True):
        keep = torch.tensor([0, 1, 3])
        assert torch.equal(landmark.state.pos[keep], old[keep])
        assert not torch.equal(landmark.state.pos[2], old[2])
    assert torch.equal(env.scenario.agent_positions()[[0, 1, 3]], agents_before[[0, 1, 3]])


# --- reward values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_agents_on_targets_in_any_order_get_reward_zero(name):
    env = _vmas_env(name)
    targets = env.scenario.target_positions().clone()  # [3, N, 2]
    shuffled = targets[:, [3, 0, 4, 1, 2]]  # no agent at "its" index: the matching finds the slots
    _place(env, shuffled)
    _, rewards, _, infos = _zero_step(env)
    for reward, info in zip(rewards, infos, strict=True):
        torch.testing.assert_close(reward, torch.zeros(3), atol=1e-6, rtol=0)
        torch.testing.assert_close(info["target_distance"], torch.zeros(3), atol=1e-6, rtol=0)
    assignment = env.scenario.assignment  # [3, N]
    matched_targets = env.scenario.target_positions().gather(1, assignment[..., None].expand(-1, -1, 2))
    torch.testing.assert_close(matched_targets, shuffled, atol=1e-6, rtol=0)
    if name == "line_control":  # fixed slots: the matching undoes the shuffle (circle slots turn with agents)
        assert torch.equal(assignment, torch.tensor([3, 0, 4, 1, 2]).expand(3, N))


@pytest.mark.parametrize("name", NAMES)
def test_one_agent_displaced_by_d_costs_d_over_n(name):
    env = _vmas_env(name)
    scenario = env.scenario
    targets = scenario.target_positions().clone()  # [3, N, 2]
    if name == "line_control":  # across the segment
        away = _across_the_line(env)
    else:  # outwards along its own ray: its polar angle, hence the targets, stay put
        away = targets[:, 2] - env.world.landmarks[0].state.pos
        away = away / torch.linalg.vector_norm(away, dim=-1, keepdim=True)
    d = 0.1
    positions = targets.clone()
    positions[:, 2] += d * away
    _place(env, positions)
    _, rewards, _, infos = _zero_step(env)
    for reward in rewards:  # team reward: minus the mean matched distance (Agarwal et al.'s normalisation)
        torch.testing.assert_close(reward, torch.full((3,), -d / N))
    expected = torch.zeros(3, N)
    expected[:, 2] = d
    distances = torch.stack([info["target_distance"] for info in infos], -1)
    torch.testing.assert_close(distances, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("max_distance", "expected"), [(0.5, -0.5 / N), (2.0, -1.0 / N)])
def test_each_matched_distance_is_clipped_at_max_distance(max_distance, expected):
    env = _vmas_env("line_control", max_distance=max_distance)
    positions = env.scenario.target_positions().clone()
    positions[:, 0] += 1.0 * _across_the_line(env)  # 1 from its slot, farther from every other
    _place(env, positions)
    _, rewards, _, _ = _zero_step(env)
    torch.testing.assert_close(rewards[0], torch.full((3,), expected))
    torch.testing.assert_close(env.scenario.matched_distance[:, 0], torch.ones(3))


@pytest.mark.parametrize("name", NAMES)
def test_observation_layout(name):
    env = _vmas_env(name)
    obs = env.reset()
    agents, landmarks = env.world.agents, env.world.landmarks
    for i, agent in enumerate(agents):
        pos = agent.state.pos
        expected = torch.cat(
            [
                agent.state.vel,
                pos,
                *[landmark.state.pos - pos for landmark in landmarks],
                *[other.state.pos - pos for j, other in enumerate(agents) if j != i],
            ],
            -1,
        )
        torch.testing.assert_close(obs[i], expected)
    narrow = _vmas_env(name, observe_other_agents=False).reset()
    assert narrow[0].shape[-1] == OBS_DIM[name] - 2 * (N - 1)


# --- rendering --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_rendering_draws_the_targets(name, monkeypatch):
    env = _vmas_env(name, num_envs=2)
    env.step(env.get_random_actions())
    # VMAS picks pyglet's headless (EGL) mode on its first render, before anything imports its rendering
    image = env.render(mode="rgb_array", env_index=1)
    geoms = env.scenario.extra_render(1)
    assert len(geoms) == 1 + 2 * N  # outline, a ring per target, a line per agent
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.shape == (700, 700, 3)
    monkeypatch.setattr(type(env.scenario), "extra_render", lambda self, env_index=0: [])
    plain = env.render(mode="rgb_array", env_index=1)
    assert (image != plain).any(), "the targets are not drawn"


# --- training through the CLI -----------------------------------------------------------------------


@pytest.mark.simulator
@pytest.mark.parametrize("name", NAMES)
def test_mappo_trains_two_iterations(name, in_tmp):
    # the env config after mappo.yaml, then the small sizes (a later --config would override them)
    cli = MarlCLI(
        args=cli_args(
            "fit",
            "--config",
            str(CONF / "env" / f"{name}.yaml"),
            *SMALL_RUN_ARGS,
            "--trainer.logger",
            "false",
            "--trainer.callbacks.init_args.dirpath",
            str(in_tmp / "ckpt"),
            "--model.total_frames",
            "400",
            small=False,
        )
    )
    model = cli.model
    assert int(model.iterations) == 2 and int(model.frames) == 400
    assert cli.datamodule.env_factory.name == name
    assert (model.env_spec.n_agents, model.env_spec.observation_dim) == (N, OBS_DIM[name])
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["loss/policy"]) and torch.isfinite(metrics["loss/value"])
    assert (in_tmp / "ckpt" / "last.ckpt").exists()
