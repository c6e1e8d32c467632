"""Circle control: N agents form a circle around a landmark, evenly spaced on it.

DPO paper, App. A.1: "There are N agents who need to form a circle around a landmark"; Sec. 4.2: N = 5.
The task is Agarwal et al. (2020)'s ``simple_formation``; placement, radius and the orientation of the
target points follow their code.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.scenarios._formation import TWO_PI, FormationParams, FormationScenario, unit


@dataclasses.dataclass(frozen=True)
class CircleControlParams(FormationParams):
    """:class:`FormationParams` plus the circle's radius; sizes are Agarwal et al.'s for this task.

    Attributes:
        radius: radius of the target circle around the landmark (Agarwal et al.: ``target_radius = 0.5``).
    """

    agent_radius: float = 0.05
    landmark_radius: float = 0.03
    radius: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.radius > 0:
            raise ConfigError(f"data.env.init_args.scenario_kwargs.radius must be > 0, got {self.radius}.")


class CircleControl(FormationScenario, name="circle_control", landmarks=1, params_class=CircleControlParams):
    """N agents spread evenly on a circle of ``radius`` around a landmark (DPO paper App. A.1).

    - Landmark (Agarwal et al.): uniform in ``[-arena_size/2, arena_size/2]^2``.
    - Targets: ``landmark + radius * (cos, sin)(theta_min + 2 pi k / N)``, k = 0..N-1, where ``theta_min``
      is the smallest polar angle, in ``[0, 2 pi)`` about the landmark, of any agent. Only the shape is
      asked for, so the circle's orientation follows the agents (Agarwal et al. anchor it at the agent
      with the smallest angle); the target set is continuous when agents sit on it, because turning the
      anchor by 2 pi / N gives the same points.
    - Observation: ``[vel (2), pos (2), landmark - pos (2), others - pos (2(N-1))]``, 14 values for N = 5.

    Everything else (matching, team reward, no termination) is :class:`FormationScenario`'s.
    """

    def place_landmarks(self, rows: int, env_index: int | None) -> None:
        half = 0.5 * self.params.arena_size
        self.world.landmarks[0].set_pos(self._uniform(rows, -half, half), batch_index=env_index)

    def target_positions(self) -> Tensor:
        center = self.world.landmarks[0].state.pos  # [B, 2]
        relative = self.agent_positions() - center[:, None]  # [B, N, 2]
        angle = torch.remainder(torch.atan2(relative[..., 1], relative[..., 0]), TWO_PI)  # [B, N]
        n = self.params.n_agents
        slots = torch.arange(n, device=self.world.device, dtype=center.dtype) * (TWO_PI / n)  # [N]
        target_angle = angle.min(-1).values[:, None] + slots  # [B, N]
        return center[:, None] + self.params.radius * unit(target_angle)  # [B, N, 2]

    def formation_geoms(self, env_index: int) -> list:
        from vmas.simulator import rendering
        from vmas.simulator.utils import Color

        circle = rendering.make_circle(self.params.radius, res=60, filled=False)
        circle.add_attr(
            rendering.Transform(translation=self.world.landmarks[0].state.pos[env_index].tolist())
        )
        circle.set_color(*Color.GRAY.value, alpha=0.5)
        return [circle]
