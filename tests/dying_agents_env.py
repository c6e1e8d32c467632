"""A small PettingZoo parallel env whose agents die at different steps (for the masking tests).

Each agent observes (its own age / max_cycles, its id / n_agents); action 0 earns 1 per step, action 1 earns
0; agent i dies after ``lifetimes[i]`` steps and is then gone from ``agents``. The episode ends when all
are dead or at ``max_cycles``.
"""

from __future__ import annotations

import functools

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv


class DyingAgents(ParallelEnv):
    metadata = {"name": "dying_agents_v0", "is_parallelizable": True}

    def __init__(self, lifetimes: tuple[int, ...] = (2, 5, 8), max_cycles: int = 8) -> None:
        self.lifetimes = tuple(lifetimes)
        self.max_cycles = max_cycles
        self.possible_agents = [f"agent_{i}" for i in range(len(self.lifetimes))]
        self.agents: list[str] = []
        self._t = 0

    @functools.cache  # noqa: B019 - one space object per agent, as PettingZoo expects
    def observation_space(self, agent: str) -> spaces.Box:
        return spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(2)

    def _obs(self, agent: str) -> np.ndarray:
        index = self.possible_agents.index(agent)
        return np.array([self._t / self.max_cycles, index / len(self.possible_agents)], dtype=np.float32)

    def reset(self, seed: int | None = None, options: dict | None = None):
        self._t = 0
        self.agents = list(self.possible_agents)
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict):
        self._t += 1
        rewards = {a: float(actions[a] == 0) for a in self.agents}
        truncated = self._t >= self.max_cycles
        terminations = {
            a: self._t >= self.lifetimes[self.possible_agents.index(a)] for a in self.agents
        }
        truncations = {a: truncated for a in self.agents}
        observations = {a: self._obs(a) for a in self.agents}
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return observations, rewards, terminations, truncations, infos


def parallel_env(**kwargs) -> DyingAgents:
    return DyingAgents(**kwargs)
