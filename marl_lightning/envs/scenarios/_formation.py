"""What line control and circle control share: agents, physics, observations, matching, reward, drawing.

Both tasks come from the DPO paper's MPE experiments (Sec. 4.2, App. A.1), which take them from Agarwal
et al. (2020), "Learning transferable cooperative behavior in multi-agent teams" (AAMAS), on the original
MPE (Lowe et al., 2017). Where the DPO paper is silent, the choice follows Agarwal et al.'s scenario code
(``simple_line.py``/``simple_formation.py`` of their ``marl_transfer`` repository); each such choice says so.

Target points are a set, not a list: no agent is told its slot. Every step the agents are matched to the
targets by the assignment that minimises the summed agent-target distance (Agarwal et al. use
``scipy.optimize.linear_sum_assignment`` per env). Here it is vectorised over the VMAS batch: for
N <= :data:`MAX_ENUMERATED_AGENTS` all N! permutations are scored at once (``[B, N!]`` costs by one matrix
product, argmin); above that, scipy's Hungarian solver runs once per env.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import math
from functools import cache
from typing import ClassVar

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from vmas.simulator.core import Agent, World
from vmas.simulator.utils import Color

from marl_lightning.envs.scenarios._mpe import MpeParams, MpeScenario

MAX_ENUMERATED_AGENTS = 6
"""Largest N solved by enumerating permutations (6! = 720 per env); larger N use scipy once per env."""


@cache
def _permutations(n: int, device: str) -> tuple[Tensor, Tensor]:
    """All permutations of ``0..n-1`` in lexicographic order and their incidence matrix, on ``device``.

    Shapes:
        returns perms [n!, n] long, incidence [n * n, n!] float: ``incidence[i * n + perms[k, i], k] = 1``,
        so ``cost.reshape(B, n * n) @ incidence`` is every permutation's total cost.
    """
    perms = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long).reshape(-1, n)
    k = perms.shape[0]
    incidence = torch.zeros(n * n, k)
    incidence[(torch.arange(n) * n + perms).reshape(-1), torch.arange(k).repeat_interleave(n)] = 1.0
    return perms.to(device), incidence.to(device)


def min_cost_assignment(cost: Tensor, max_enumerated: int = MAX_ENUMERATED_AGENTS) -> Tensor:
    """The target of each agent in the one-to-one matching of least total cost, per env.

    For ``N <= max_enumerated`` every permutation is scored at once, as one matrix product with the
    permutations' 0/1 incidence matrix (10-40 times faster than gathering ``[B, N!, N]`` costs); ties go
    to the first permutation in lexicographic order. Above, ``scipy.optimize.linear_sum_assignment``
    solves each env in turn.

    Shapes:
        cost [B, N, N] (agent, target) -> returns [B, N] long: row b is a permutation of 0..N-1, agent i
        goes to target ``returns[b, i]``.
    """
    if cost.ndim != 3 or cost.shape[-1] != cost.shape[-2]:
        raise ValueError(f"cost must be [B, N, N] (agent, target), got shape {tuple(cost.shape)}.")
    n = cost.shape[-1]
    if n <= max_enumerated:
        perms, incidence = _permutations(n, str(cost.device))  # [N!, N], [N * N, N!]
        totals = cost.reshape(-1, n * n) @ incidence.to(cost.dtype)  # [B, N!]
        return perms[totals.argmin(-1)]  # [B, N]
    costs = cost.detach().cpu().numpy()
    assignment = np.empty(costs.shape[:2], dtype=np.int64)
    for env, env_cost in enumerate(costs):
        rows, cols = linear_sum_assignment(env_cost)
        assignment[env, rows] = cols
    return torch.from_numpy(assignment).to(cost.device)


@dataclasses.dataclass(frozen=True)
class FormationParams(MpeParams):
    """:class:`~marl_lightning.envs.scenarios._mpe.MpeParams` plus the reward's clip.

    Attributes:
        max_distance: each matched distance is clipped at this value before averaging, as in Agarwal et al.'s
            code (``np.clip(dists, 0, 2)``); ``inf`` disables the clip.

    ``observe_other_agents`` (on by default, MPE's ``simple_spread`` layout): Agarwal et al. left the other
    agents out and let agents exchange messages instead.
    """

    max_distance: float = 2.0

    positive = (*MpeParams.positive, "max_distance")


class FormationScenario(MpeScenario, abc.ABC):
    """N agents must occupy N target points that a subclass derives from the landmarks (and agents).

    Modelling (DPO paper App. A.1 and Sec. 4.2; Agarwal et al. 2020 where the paper is silent):

    - World, agents, actions, reset of the agents, observation, no termination: the MPE base shared with
      simple spread (:class:`~marl_lightning.envs.scenarios._mpe.MpeScenario`); landmarks by the subclass.
    - Targets: :meth:`target_positions`, matched to agents by :func:`min_cost_assignment` on Euclidean
      distances every step (Agarwal et al.: ``linear_sum_assignment``).
    - Reward: one team reward, the same for every agent, ``-mean_i min(d_i, max_distance)`` over the matched
      agent-target distances d_i. App. A.1: "the reward in these tasks is the distance between all the
      agents and their target locations"; the mean and the clip are Agarwal et al.'s ``joint_reward``.
      Targets are not observed: they follow from landmarks (and, for the circle, the agents' positions),
      which are.
    - Termination: the paper gives none; Agarwal et al. also ended an episode once every agent was within
      0.05 of its target, which we leave out so every episode has ``max_steps`` steps.
    - Info: ``target_distance``, each agent's distance to its matched target.

    The matching is recomputed when the first agent's reward is asked for (VMAS asks every agent's reward,
    in order, after each step) and after every reset.
    """

    params_class: ClassVar[type[FormationParams]] = FormationParams

    params: FormationParams

    def setup_state(self, world: World) -> None:
        n = self.params.n_agents
        self._assignment = torch.zeros(world.batch_dim, n, dtype=torch.long, device=world.device)  # [B, N]
        self._matched_distance = torch.zeros(world.batch_dim, n, device=world.device)  # [B, N]
        self._team_reward = torch.zeros(world.batch_dim, device=world.device)  # [B]

    def after_reset(self, env_index: int | None) -> None:
        self.update_matching(env_index)

    @abc.abstractmethod
    def target_positions(self) -> Tensor:
        """The N target points of every env, in the current state.

        Shapes:
            returns [B, N, 2].
        """

    @abc.abstractmethod
    def formation_geoms(self, env_index: int) -> list:
        """VMAS geometries of the formation's outline (segment or circle) in one env."""

    def update_matching(self, env_index: int | None = None) -> None:
        """Match agents to targets and set the team reward, in every env or in one."""
        agents = self.agent_positions()  # [B, N, 2]
        targets = self.target_positions()  # [B, N, 2]
        envs = slice(None) if env_index is None else slice(env_index, env_index + 1)
        cost = torch.linalg.vector_norm(agents[envs, :, None] - targets[envs, None], dim=-1)  # [b, N, N]
        assignment = min_cost_assignment(cost)  # [b, N]
        matched = cost.gather(-1, assignment.unsqueeze(-1)).squeeze(-1)  # [b, N]
        self._assignment[envs] = assignment
        self._matched_distance[envs] = matched
        self._team_reward[envs] = -matched.clamp(max=self.params.max_distance).mean(-1)

    @property
    def assignment(self) -> Tensor:
        """Target index of each agent after the last matching. Shapes: [B, N]."""
        return self._assignment

    @property
    def matched_distance(self) -> Tensor:
        """Each agent's distance to its matched target after the last matching. Shapes: [B, N]."""
        return self._matched_distance

    def reward(self, agent: Agent) -> Tensor:
        if agent is self.world.agents[0]:
            self.update_matching()
        return self._team_reward

    def info(self, agent: Agent) -> dict[str, Tensor]:
        return {"target_distance": self._matched_distance[:, self.agent_index(agent)]}

    def extra_render(self, env_index: int = 0) -> list:
        """The formation outline, each target point (green ring) and each agent's matched target (line)."""
        from vmas.simulator import rendering

        geoms = self.formation_geoms(env_index)
        targets = self.target_positions()[env_index]  # [N, 2]
        agents = self.agent_positions()[env_index]  # [N, 2]
        cost = torch.linalg.vector_norm(agents[:, None] - targets[None], dim=-1)  # [N, N]
        assignment = min_cost_assignment(cost.unsqueeze(0))[0]  # [N]
        ring = max(self.params.agent_radius, 0.03)
        for target in targets.tolist():
            circle = rendering.make_circle(ring, filled=False)
            circle.add_attr(rendering.Transform(translation=target))
            circle.set_color(*Color.GREEN.value)
            circle.set_linewidth(2)
            geoms.append(circle)
        for agent_pos, target in zip(agents.tolist(), targets[assignment].tolist(), strict=True):
            line = rendering.Line(agent_pos, target, width=1)
            line.set_color(*Color.GREEN.value, alpha=0.6)
            geoms.append(line)
        return geoms


def unit(angle: Tensor) -> Tensor:
    """Unit vectors at the given angles. Shapes: angle [...] -> [..., 2]."""
    return torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)


TWO_PI = 2 * math.pi
