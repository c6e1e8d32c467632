"""A PettingZoo parallel env with a chosen observation/action space, to check what is refused (tests only)."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

SPACES = {
    "discrete": spaces.Discrete(3),
    "box": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
    "multi_discrete": spaces.MultiDiscrete([3, 2]),
    "multi_binary": spaces.MultiBinary(4),
    "image": spaces.Box(0.0, 1.0, shape=(4, 4, 3), dtype=np.float32),
    "vector": spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32),
}


class OddSpaces(ParallelEnv):
    metadata = {"name": "odd_spaces_v0", "is_parallelizable": True}

    def __init__(self, action: str = "discrete", observation: str = "vector", max_cycles: int = 5) -> None:
        self._action, self._observation = SPACES[action], SPACES[observation]
        self.max_cycles = max_cycles
        self.possible_agents = ["a_0", "a_1"]
        self.agents: list[str] = []
        self._t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return self._observation

    def action_space(self, agent: str) -> spaces.Space:
        return self._action

    def reset(self, seed: int | None = None, options: dict | None = None):
        self._t = 0
        self.agents = list(self.possible_agents)
        return {a: self._observation.sample() for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict):
        self._t += 1
        done = self._t >= self.max_cycles
        observations = {a: self._observation.sample() for a in self.agents}
        result = (
            observations,
            {a: 0.0 for a in self.agents},
            {a: False for a in self.agents},
            {a: done for a in self.agents},
            {a: {} for a in self.agents},
        )
        if done:
            self.agents = []
        return result


def parallel_env(**kwargs) -> OddSpaces:
    return OddSpaces(**kwargs)
