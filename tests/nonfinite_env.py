"""The built-in stochastic game, poisoned: NaN in one agent's reward or observation at a chosen step.

``at_step`` (None: never) counts the env's steps (each step of all its envs at once) since it was built;
from that step until ``until_step`` (exclusive; None: for ever) env ``env_index``'s value for ``agent`` is
NaN. A training
env takes ``frames_per_batch / num_envs`` steps an iteration, so step ``s`` (0-based) falls in iteration
``s // T + 1`` at its step ``s % T``.
"""

from __future__ import annotations

from typing import Literal

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, Transform, TransformedEnv
from typing_extensions import override

from marl_lightning.core import keys
from marl_lightning.envs.stochastic_game import StochasticGameTask


class _Poison(Transform):
    def __init__(
        self, key: tuple[str, ...], agent: int, env_index: int, at_step: int, until_step: int | None
    ) -> None:
        super().__init__(in_keys=[key], out_keys=[key])
        self.key, self.agent, self.env_index = key, agent, env_index
        self.at_step, self.until_step = at_step, until_step
        self.steps = 0

    @override
    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        step, self.steps = self.steps, self.steps + 1
        if step >= self.at_step and (self.until_step is None or step < self.until_step):
            value = next_tensordict.get(self.key).clone()  # [E, A, ...]
            value[self.env_index, self.agent] = torch.nan
            next_tensordict.set(self.key, value)
        return next_tensordict


class PoisonedStochasticGame(StochasticGameTask):
    def __init__(
        self,
        poison: Literal["reward", "observation"] = "reward",
        agent: int = 1,
        env_index: int = 2,
        at_step: int | None = None,
        until_step: int | None = None,
        n_states: int = 10,
        n_agents: int = 3,
        n_actions: int = 3,
        horizon: int = 20,
    ) -> None:
        super().__init__(n_states=n_states, n_agents=n_agents, n_actions=n_actions, horizon=horizon)
        self.poison, self.agent, self.env_index = poison, agent, env_index
        self.at_step, self.until_step = at_step, until_step

    @override
    def make(self, num_envs: int, device: torch.device | str, seed: int) -> EnvBase:
        key = keys.REWARD if self.poison == "reward" else keys.OBSERVATION
        env = super().make(num_envs, device, seed)
        if self.at_step is None:
            return env
        return TransformedEnv(env, _Poison(key, self.agent, self.env_index, self.at_step, self.until_step))
