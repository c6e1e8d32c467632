"""VMAS scenarios through TorchRL's ``VmasEnv`` (vectorised in torch, one env object for all copies).

Besides VMAS's own scenarios, our formation tasks (:data:`marl_lightning.envs.scenarios.SCENARIOS`:
``line_control``, ``circle_control``) are built by name; VMAS receives an instance of their class.
"""

from __future__ import annotations

from typing import Any

import torch
import vmas
from torchrl.envs.libs.vmas import VmasEnv

from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.base import EnvFactory
from marl_lightning.envs.scenarios import SCENARIOS


def available_scenarios() -> list[str]:
    """Every scenario name VMAS knows, and ours (:data:`~marl_lightning.envs.scenarios.SCENARIOS`)."""
    return sorted({*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios, *SCENARIOS})


class Vmas(EnvFactory):
    """A VMAS scenario.

    Args:
        scenario: VMAS scenario name, e.g. ``"navigation"``, or one of ours: ``"line_control"``,
            ``"circle_control"`` (:mod:`marl_lightning.envs.scenarios`).
        n_agents: number of agents (passed to the scenario).
        continuous_actions: continuous (squashed Gaussian policy) or discrete (categorical) actions.
        max_steps: episode length; episodes end (``done``) after this many steps.
        scenario_kwargs: further keyword arguments of the scenario.
    """

    def __init__(
        self,
        scenario: str = "navigation",
        n_agents: int = 3,
        continuous_actions: bool = True,
        max_steps: int = 100,
        scenario_kwargs: dict[str, Any] | None = None,
    ) -> None:
        known = available_scenarios()
        if scenario not in known:
            raise ConfigError(
                f"data.env.scenario: unknown VMAS scenario {scenario!r}. "
                f"Choose one of: {', '.join(known)}."
            )
        if n_agents < 1:
            raise ConfigError(f"data.env.n_agents must be >= 1, got {n_agents}.")
        if max_steps < 1:
            raise ConfigError(f"data.env.max_steps must be >= 1, got {max_steps}.")
        self.scenario = scenario
        self.n_agents = n_agents
        self.continuous_actions = continuous_actions
        self._max_steps = max_steps
        self.scenario_kwargs = dict(scenario_kwargs or {})

    @property
    def name(self) -> str:
        return self.scenario

    @property
    def max_steps(self) -> int:
        return self._max_steps

    def make(self, num_envs: int, device: torch.device | str, seed: int) -> VmasEnv:
        # Ours are BaseScenario classes VMAS cannot find by name: it gets a fresh instance per env.
        scenario = SCENARIOS[self.scenario]() if self.scenario in SCENARIOS else self.scenario
        return VmasEnv(
            scenario=scenario,
            num_envs=num_envs,
            continuous_actions=self.continuous_actions,
            max_steps=self._max_steps,
            device=device,
            seed=seed,
            n_agents=self.n_agents,
            **self.scenario_kwargs,
        )
