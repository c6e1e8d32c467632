"""What our three MPE tasks on VMAS share: MPE's world, agents, landmarks, observation layout and reset.

The DPO paper's MPE experiments (Sec. 4.2: simple spread, line control, circle control, N = 5) ran on the
original MPE (Lowe et al., 2017), whose maintained version is PettingZoo's mpe2. VMAS's own
``simple_spread`` is not an exact port (its reward is N times MPE's, it counts each collision twice, its
force per unit action is 1 where MPE's is 5), so the three tasks here are built on one base that follows
mpe2 wherever VMAS lets it (``docs/environments.md`` lists what is the same and what is not):

- World: VMAS's defaults are MPE's constants (dt 0.1, drag 0.25, contact force 100, contact margin 1e-3,
  mass 1, no speed limit); no walls. Holonomic agents, force = action × ``u_multiplier`` (MPE's
  ``sensitivity`` 5 for agents without ``accel``). Continuous actions are the force in ``[-1, 1]^2``, so a
  full action pushes as hard as mpe2's continuous action (``(a_2 - a_1, a_4 - a_3) × 5``); discrete ones
  are VMAS's 9 moves (stay and 8 directions), not MPE's 5 (stay, ±x, ±y).
- VMAS integrates semi-implicitly (velocity first, then the position with the new velocity); MPE moves
  the position with the old velocity. Trajectories therefore differ by one step of lag in position; the
  velocities agree.
- Reset: agents uniform in ``[-arena_size, arena_size]^2`` at rest; landmarks by the subclass.
- Observation of agent i (MPE's layout): ``[vel_i (2), pos_i (2), landmark_l - pos_i (2 per landmark),
  pos_j - pos_i (2 per other agent j, by index)]``, the last block only with ``observe_other_agents``.
  mpe2 appends 2 communication values per other agent, always 0 in these tasks (agents are silent):
  left out here.
- Termination: none (:meth:`done` is always false): VMAS's ``max_steps`` alone ends an episode, as
  mpe2's ``max_cycles`` does.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import torch
from torch import Tensor
from vmas.simulator.core import Agent, Landmark, Sphere, World
from vmas.simulator.scenario import BaseScenario
from vmas.simulator.utils import Color

from marl_lightning.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class MpeParams:
    """Parameters every MPE task here takes (``scenario_kwargs`` of :class:`~marl_lightning.envs.Vmas`).

    Attributes:
        n_agents: N (DPO paper Sec. 4.2: N = 5).
        arena_size: agents start uniformly in ``[-arena_size, arena_size]^2`` (MPE: 1).
        agent_radius: agents are colliding discs of this radius.
        landmark_radius: landmarks are drawn discs of this radius; they do not collide.
        u_multiplier: force per unit action; 5 is MPE's ``sensitivity`` for agents without ``accel``.
        observe_other_agents: append the other agents' relative positions to each observation (MPE's
            ``simple_spread``).
    """

    n_agents: int = 5
    arena_size: float = 1.0
    agent_radius: float = 0.05
    landmark_radius: float = 0.03
    u_multiplier: float = 5.0
    observe_other_agents: bool = True

    min_agents: ClassVar[int] = 1
    positive: ClassVar[tuple[str, ...]] = ("arena_size", "agent_radius", "landmark_radius", "u_multiplier")

    def __post_init__(self) -> None:
        if self.n_agents < self.min_agents:
            raise ConfigError(
                f"data.env.init_args.n_agents must be >= {self.min_agents} for this scenario, "
                f"got {self.n_agents}."
            )
        for name in self.positive:
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"data.env.init_args.scenario_kwargs.{name} must be > 0, got {value}.")


class MpeScenario(BaseScenario, abc.ABC):
    """N MPE agents and some landmarks; subclasses place the landmarks and define the reward.

    A task declares itself in its class line: ``class LineControl(FormationScenario, name="line_control",
    landmarks=2, params_class=LineControlParams)`` (any of the three may be left to the parent).
    """

    name: ClassVar[str]
    landmarks: ClassVar[int]
    params_class: ClassVar[type[MpeParams]] = MpeParams

    params: MpeParams

    def __init_subclass__(
        cls,
        name: str | None = None,
        landmarks: int | None = None,
        params_class: type[MpeParams] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init_subclass__(**kwargs)
        for attribute, value in (("name", name), ("landmarks", landmarks), ("params_class", params_class)):
            if value is not None:
                setattr(cls, attribute, value)

    def n_landmarks(self) -> int:
        """How many landmarks the task has: ``landmarks``, or what a subclass derives from ``self.params``."""
        return self.landmarks

    @abc.abstractmethod
    def place_landmarks(self, rows: int, env_index: int | None) -> None:
        """Put the landmarks of every env (``env_index=None``, ``rows`` = the batch) or of one env (``rows``
        = 1) at their random reset places."""

    def setup_state(self, world: World) -> None:
        """Allocate the subclass's per-env buffers, once ``world`` is built (VMAS sets ``self.world`` only
        after :meth:`make_world` returns)."""

    def after_reset(self, env_index: int | None) -> None:
        """Recompute what the subclass derives from the state, after a reset of every env or of one."""

    def make_world(self, batch_dim: int, device: torch.device, **kwargs) -> World:
        known = {field.name for field in dataclasses.fields(self.params_class)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(
                f"data.env.init_args.scenario_kwargs: {self.name} has no argument(s) {unknown}. It takes: "
                f"{', '.join(sorted(known - {'n_agents'}))} (n_agents is data.env.init_args.n_agents)."
            )
        self.params = self.params_class(**kwargs)
        p = self.params
        world = World(batch_dim=batch_dim, device=device)  # VMAS defaults = MPE physics
        for i in range(p.n_agents):
            world.add_agent(
                Agent(
                    name=f"agent_{i}",
                    collide=True,
                    shape=Sphere(radius=p.agent_radius),
                    color=Color.BLUE,
                    u_multiplier=p.u_multiplier,
                )
            )
        for i in range(self.n_landmarks()):
            world.add_landmark(
                Landmark(
                    name=f"landmark_{i}",
                    collide=False,
                    movable=False,
                    shape=Sphere(radius=p.landmark_radius),
                    color=Color.BLACK,
                )
            )
        self._agent_index = {agent.name: i for i, agent in enumerate(world.agents)}
        self.viewer_zoom = 1.2 * p.arena_size
        self.setup_state(world)
        return world

    def agent_positions(self) -> Tensor:
        """Shapes: returns [B, N, 2]."""
        return torch.stack([agent.state.pos for agent in self.world.agents], dim=1)

    def landmark_positions(self) -> Tensor:
        """Shapes: returns [B, L, 2]."""
        return torch.stack([landmark.state.pos for landmark in self.world.landmarks], dim=1)

    def agent_index(self, agent: Agent) -> int:
        """The agent's position in ``world.agents``."""
        return self._agent_index[agent.name]

    def _uniform(self, rows: int, low: float, high: float, cols: int = 2) -> Tensor:
        return torch.empty(rows, cols, device=self.world.device).uniform_(low, high)

    def reset_world_at(self, env_index: int | None = None) -> None:
        rows = self.world.batch_dim if env_index is None else 1
        a = self.params.arena_size
        for agent in self.world.agents:
            agent.set_pos(self._uniform(rows, -a, a), batch_index=env_index)
        self.place_landmarks(rows, env_index)
        self.after_reset(env_index)

    def observation(self, agent: Agent) -> Tensor:
        pos = agent.state.pos  # [B, 2]
        parts = [agent.state.vel, pos]
        parts += [landmark.state.pos - pos for landmark in self.world.landmarks]
        if self.params.observe_other_agents:
            parts += [other.state.pos - pos for other in self.world.agents if other is not agent]
        return torch.cat(parts, dim=-1)

    def done(self) -> Tensor:
        """Never: only VMAS's ``max_steps`` ends an episode (mpe2's ``max_cycles``)."""
        return torch.zeros(self.world.batch_dim, dtype=torch.bool, device=self.world.device)
