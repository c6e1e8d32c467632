"""MPE simple spread on VMAS (our scenario) against mpe2's simple_spread_v3 on the same state: observations,
rewards, dynamics; and training through the CLI on conf/env/simple_spread_vmas.yaml."""

from __future__ import annotations

import mpe2.simple_spread_v3
import numpy as np
import pytest
import torch
import vmas
from torchrl.envs.utils import check_env_specs

from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs import Vmas
from marl_lightning.envs.scenarios import SimpleSpread
from tests.conftest import CONF, SMALL_RUN_ARGS, cli_args

N = 5
OBS_DIM = 2 + 2 + 2 * N + 2 * (N - 1)  # 22
APART = [(-0.8, -0.8), (0.8, -0.8), (-0.8, 0.8), (0.8, 0.8), (0.0, 0.0)]  # no two agents touch


def _ours(**kwargs):
    return vmas.make_env(SimpleSpread(), num_envs=1, seed=0, n_agents=N, **kwargs)


def _mpe(seed: int = 3, **kwargs):
    env = mpe2.simple_spread_v3.parallel_env(N=N, max_cycles=25, continuous_actions=True, **kwargs)
    env.reset(seed=seed)
    return env


def _copy_state(mpe, ours) -> None:
    """Our env at the mpe2 env's positions and velocities."""
    world = mpe.unwrapped.world
    for theirs, mine in zip(world.agents, ours.world.agents, strict=True):
        mine.set_pos(torch.tensor(theirs.state.p_pos, dtype=torch.float32)[None], batch_index=None)
        mine.set_vel(torch.tensor(theirs.state.p_vel, dtype=torch.float32)[None], batch_index=None)
    for theirs, mine in zip(world.landmarks, ours.world.landmarks, strict=True):
        mine.set_pos(torch.tensor(theirs.state.p_pos, dtype=torch.float32)[None], batch_index=None)


def _mpe_rewards(mpe) -> np.ndarray:
    """mpe2's reward of every agent in the current state (its SimpleEnv's formula). Shapes: [N]."""
    env, world = mpe.unwrapped, mpe.unwrapped.world
    team = env.scenario.global_reward(world)
    local = np.array([env.scenario.reward(agent, world) for agent in world.agents])
    return team * (1 - env.local_ratio) + local * env.local_ratio


def test_check_env_specs_and_sizes_through_the_factory():
    for continuous in (True, False):
        factory = Vmas("mpe_simple_spread", n_agents=N, continuous_actions=continuous, max_steps=25)
        env = factory.make(4, "cpu", 0)
        check_env_specs(env)
        assert env.observation_spec[keys.OBSERVATION].shape == (4, N, OBS_DIM)
        rollout = env.rollout(25, break_when_any_done=False)
        done = rollout[keys.nxt(keys.ROOT_DONE)].squeeze(-1)  # [4, 25]
        assert done[:, -1].all() and not done[:, :-1].any()  # mpe2's max_cycles alone ends an episode
        assert factory.spec().observation_dim == OBS_DIM
    with pytest.raises(ConfigError, match="local_ratio must be in"):
        Vmas("mpe_simple_spread", scenario_kwargs={"local_ratio": 1.5}).make(1, "cpu", 0)
    with pytest.raises(ConfigError, match="has no argument"):
        Vmas("mpe_simple_spread", scenario_kwargs={"obs_agents": False}).make(1, "cpu", 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_observations_are_mpe2s_without_its_silent_communication(seed):
    mpe, ours = _mpe(seed), _ours()
    _copy_state(mpe, ours)
    world = mpe.unwrapped.world
    for theirs, mine in zip(world.agents, ours.world.agents, strict=True):
        expected = mpe.unwrapped.scenario.observation(theirs, world)  # [30]
        observed = ours.scenario.observation(mine)[0]  # [22]
        np.testing.assert_allclose(observed.numpy(), expected[:OBS_DIM], atol=1e-6)
        assert not expected[OBS_DIM:].any()  # the communication block: always 0, agents are silent


@pytest.mark.parametrize("local_ratio", [0.5, 0.0, 1.0])
def test_rewards_are_mpe2s_with_collisions(local_ratio):
    mpe = _mpe(local_ratio=local_ratio)
    world = mpe.unwrapped.world
    # agents 0, 1, 2 in a chain: 0-1 and 1-2 touch (0.25 < 2 × 0.15), 0-2 do not (0.5); 3 and 4 far apart
    placed = [(0.0, 0.0), (0.25, 0.0), (0.5, 0.0), (-0.8, 0.7), (0.8, -0.7)]
    for agent, pos in zip(world.agents, placed, strict=True):
        agent.state.p_pos = np.array(pos)
    ours = _ours(local_ratio=local_ratio)
    _copy_state(mpe, ours)
    ours.scenario.update_rewards()
    rewards = torch.stack([ours.scenario.reward(agent)[0] for agent in ours.world.agents])  # [N]
    expected = _mpe_rewards(mpe)
    np.testing.assert_allclose(rewards.numpy(), expected, rtol=1e-5, atol=1e-5)
    collisions = [ours.scenario.info(agent)["collisions"][0].item() for agent in ours.world.agents]
    assert collisions == [1, 2, 1, 0, 0]


def test_vmas_own_simple_spread_is_not_mpe2s():
    """Why the scenario exists: on the same state (no collisions) VMAS's simple_spread pays every agent N
    times mpe2's team term."""
    mpe = _mpe(seed=5)
    world = mpe.unwrapped.world
    for agent, pos in zip(world.agents, APART, strict=True):
        agent.state.p_pos = np.array(pos)
    theirs = vmas.make_env("simple_spread", num_envs=1, seed=0, n_agents=N)
    _copy_state(mpe, theirs)
    team = mpe.unwrapped.scenario.global_reward(world)
    np.testing.assert_allclose(_mpe_rewards(mpe), (1 - mpe.unwrapped.local_ratio) * team, rtol=1e-6)
    vmas_reward = theirs.scenario.reward(theirs.world.agents[0])[0].item()
    assert vmas_reward == pytest.approx(N * team, rel=1e-5)


def test_one_step_from_rest_gives_mpe2s_velocity_and_position_one_step_earlier():
    """The same force: the velocities agree; VMAS moves the position with the new velocity, mpe2 with the
    old one (here 0), so after one step mpe2's agents have not moved yet and ours have moved vel × dt."""
    mpe = _mpe(seed=4)
    world = mpe.unwrapped.world
    for agent, pos in zip(world.agents, APART, strict=True):
        agent.state.p_pos, agent.state.p_vel = np.array(pos), np.zeros(2)
    ours = _ours()
    _copy_state(mpe, ours)
    start = [agent.state.p_pos.copy() for agent in world.agents]
    # mpe2's continuous action [no-op, -x, +x, -y, +y] in [0, 1]: force 5 × (a_2 - a_1, a_4 - a_3)
    actions = {agent.name: np.array([0.0, 0.2 * i, 0.0, 0.0, 0.1 * i], dtype=np.float32)
               for i, agent in enumerate(world.agents)}
    mpe.step(actions)
    forces = [agent.action.u.copy() for agent in world.agents]  # [N] × [2]
    ours.step([torch.tensor(force / 5.0, dtype=torch.float32)[None] for force in forces])
    for i, (theirs, mine) in enumerate(zip(world.agents, ours.world.agents, strict=True)):
        np.testing.assert_allclose(mine.state.vel[0].numpy(), theirs.state.p_vel, atol=1e-6)
        np.testing.assert_allclose(theirs.state.p_pos, start[i], atol=1e-12)
        np.testing.assert_allclose(mine.state.pos[0].numpy(), start[i] + 0.1 * theirs.state.p_vel, atol=1e-6)
    assert np.abs(forces[3]).max() > 0  # the forces were not all zero


@pytest.mark.simulator
def test_mappo_trains_two_iterations_on_the_config(in_tmp):
    cli = MarlCLI(
        args=cli_args(
            "fit", "--config", str(CONF / "env" / "simple_spread_vmas.yaml"), *SMALL_RUN_ARGS,
            "--trainer.logger", "false", "--trainer.callbacks.init_args.dirpath", str(in_tmp / "ckpt"),
            "--model.total_frames", "400", small=False,
        )
    )
    model = cli.model
    assert int(model.iterations) == 2 and int(model.frames) == 400
    assert (model.env_spec.n_agents, model.env_spec.observation_dim) == (N, OBS_DIM)
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["loss/policy"]) and torch.isfinite(metrics["loss/value"])
