"""MPE simple spread on VMAS, as mpe2's ``simple_spread_v3`` defines it (the DPO paper's MPE task).

DPO paper Sec. 4.2: "N agents need to cover N landmarks", N = 5, on the original MPE (Lowe et al., 2017),
whose maintained version is PettingZoo's mpe2 (``conf/env/simple_spread.yaml`` runs it, at about 650
frames/s here). This is the same task vectorised in torch. VMAS ships its own ``simple_spread``, but that
one is not mpe2's: its reward is N times mpe2's global term plus every collision counted twice for every
agent, and its force per unit action is a fifth of mpe2's. ``docs/environments.md`` compares the three.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor
from vmas.simulator.core import Agent, World

from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.scenarios._mpe import MpeParams, MpeScenario


@dataclasses.dataclass(frozen=True)
class SimpleSpreadParams(MpeParams):
    """:class:`~marl_lightning.envs.scenarios._mpe.MpeParams` with mpe2 ``simple_spread``'s sizes.

    Attributes:
        agent_radius: mpe2's agent size, 0.15.
        landmark_radius: mpe2's landmark size, 0.05.
        local_ratio: weight of each agent's own collision term against the team's coverage term,
            ``simple_spread_v3``'s ``local_ratio`` (default 0.5).
    """

    agent_radius: float = 0.15
    landmark_radius: float = 0.05
    local_ratio: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.local_ratio <= 1.0:
            raise ConfigError(
                f"data.env.init_args.scenario_kwargs.local_ratio must be in [0, 1], got {self.local_ratio}."
            )


class SimpleSpread(MpeScenario):
    """N agents cover N landmarks and avoid each other (mpe2 ``simple_spread_v3``).

    - Landmarks: N, uniform in ``[-arena_size, arena_size]^2`` at reset, fixed, not colliding.
    - Reward of agent i (mpe2's ``SimpleEnv``): ``(1 - local_ratio) · G + local_ratio · L_i``, where the
      team term ``G = -Σ_l min_j |p_j - x_l|`` (every landmark's distance to its nearest agent) and the
      local term ``L_i = -#{j ≠ i : |p_i - p_j| < 2 · agent_radius}`` (the agents touching agent i).
    - Observation: the MPE layout, ``[vel (2), pos (2), landmarks - pos (2N), others - pos (2(N-1))]``,
      22 values for N = 5 (mpe2 also appends 2(N-1) communication values, always 0: left out).
    - Info: ``collisions`` (agents touching agent i) and ``min_landmark_distance`` (for every landmark, the
      distance to its nearest agent, summed: -G).

    World, actions, agents' reset and termination are
    :class:`~marl_lightning.envs.scenarios._mpe.MpeScenario`'s.
    Rewards of all agents are computed at once when the first agent's is asked for (VMAS asks every agent's
    reward, in order, after each step).
    """

    name = "mpe_simple_spread"
    params_class = SimpleSpreadParams

    params: SimpleSpreadParams

    def n_landmarks(self) -> int:
        return self.params.n_agents

    def setup_state(self, world: World) -> None:
        n = self.params.n_agents
        self._rewards = torch.zeros(world.batch_dim, n, device=world.device)  # [B, N]
        self._collisions = torch.zeros(world.batch_dim, n, device=world.device)  # [B, N]
        self._coverage = torch.zeros(world.batch_dim, device=world.device)  # [B], -G

    def after_reset(self, env_index: int | None) -> None:
        self.update_rewards()

    def place_landmarks(self, rows: int, env_index: int | None) -> None:
        a = self.params.arena_size
        for landmark in self.world.landmarks:
            landmark.set_pos(self._uniform(rows, -a, a), batch_index=env_index)

    def update_rewards(self) -> None:
        """Every agent's reward from the current positions, in every env."""
        agents = self.agent_positions()  # [B, N, 2]
        landmarks = self.landmark_positions()  # [B, N, 2]
        to_landmarks = torch.linalg.vector_norm(agents[:, :, None] - landmarks[:, None], dim=-1)  # [B, N, N]
        coverage = to_landmarks.min(1).values.sum(-1)  # [B], -G
        between = torch.linalg.vector_norm(agents[:, :, None] - agents[:, None], dim=-1)  # [B, N, N]
        touching = between < 2 * self.params.agent_radius
        touching &= ~torch.eye(self.params.n_agents, dtype=torch.bool, device=agents.device)
        collisions = touching.sum(-1).to(agents.dtype)  # [B, N]
        ratio = self.params.local_ratio
        self._coverage = coverage
        self._collisions = collisions
        self._rewards = -(1.0 - ratio) * coverage[:, None] - ratio * collisions

    def reward(self, agent: Agent) -> Tensor:
        if agent is self.world.agents[0]:
            self.update_rewards()
        return self._rewards[:, self.agent_index(agent)]

    def info(self, agent: Agent) -> dict[str, Tensor]:
        return {
            "collisions": self._collisions[:, self.agent_index(agent)],
            "min_landmark_distance": self._coverage,
        }
