"""Line control: N agents line up, evenly spaced, on the segment between two landmarks.

DPO paper, App. A.1: "There are N agents who need to line up between 2 landmarks"; Sec. 4.2: N = 5.
The task is Agarwal et al. (2020)'s ``simple_line``; placement and spacing follow their code.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.scenarios._formation import TWO_PI, FormationParams, FormationScenario, unit

_ROTATION_STEP = math.radians(5.0)
_N_ROTATIONS = 72  # 72 x 5 degrees: every direction


@dataclasses.dataclass(frozen=True)
class LineControlParams(FormationParams):
    """:class:`FormationParams` plus the segment's length; sizes are Agarwal et al.'s for this task.

    Attributes:
        line_length: distance between the two landmarks (Agarwal et al.: ``1.25 * arena_size``); at most
            ``1.5 * arena_size`` so that a direction keeping the second landmark in the arena always exists.
    """

    agent_radius: float = 0.03
    landmark_radius: float = 0.02
    line_length: float = 1.25

    min_agents = 2  # the end points are targets: a line needs two agents

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.line_length <= 1.5 * self.arena_size:
            raise ConfigError(
                f"data.env.init_args.scenario_kwargs.line_length must be in (0, 1.5 * arena_size = "
                f"{1.5 * self.arena_size}], got {self.line_length}."
            )


class LineControl(FormationScenario, name="line_control", landmarks=2, params_class=LineControlParams):
    """N agents spread evenly over the segment between 2 landmarks (DPO paper App. A.1).

    - Landmarks (Agarwal et al.): the first uniform in ``[-arena_size/4, arena_size/4]^2``; the second at
      ``line_length`` from it in a uniformly drawn direction, turned in 5 degree steps until it lies inside
      ``(-arena_size, arena_size)^2`` (all 72 turns tried at once, the first inside kept).
    - Targets: ``landmark_0 + k / (N - 1) * (landmark_1 - landmark_0)``, k = 0..N-1, both landmarks
      included, spacing ``line_length / (N - 1)`` (Agarwal et al.'s ``ideal_sep``).
    - Observation: ``[vel (2), pos (2), landmark_0 - pos (2), landmark_1 - pos (2), others - pos (2(N-1))]``,
      16 values for N = 5.

    Everything else (matching, team reward, no termination) is :class:`FormationScenario`'s.
    """

    def place_landmarks(self, rows: int, env_index: int | None) -> None:
        a = self.params.arena_size
        start = self._uniform(rows, -0.25 * a, 0.25 * a)  # [b, 2]
        first_angle = self._uniform(rows, 0.0, TWO_PI, cols=1)  # [b, 1]
        turns = torch.arange(_N_ROTATIONS, device=self.world.device) * _ROTATION_STEP  # [72]
        candidates = start[:, None] + self.params.line_length * unit(first_angle + turns)  # [b, 72, 2]
        inside = (candidates.abs() < a).all(-1)  # [b, 72]
        first_inside = inside.int().argmax(-1)  # [b], first True
        end = candidates[torch.arange(rows, device=self.world.device), first_inside]  # [b, 2]
        self.world.landmarks[0].set_pos(start, batch_index=env_index)
        self.world.landmarks[1].set_pos(end, batch_index=env_index)

    def target_positions(self) -> Tensor:
        start = self.world.landmarks[0].state.pos  # [B, 2]
        end = self.world.landmarks[1].state.pos  # [B, 2]
        n = self.params.n_agents
        fraction = torch.arange(n, device=self.world.device, dtype=start.dtype) / (n - 1)  # [N]
        return start[:, None] + fraction[None, :, None] * (end - start)[:, None]  # [B, N, 2]

    def formation_geoms(self, env_index: int) -> list:
        from vmas.simulator import rendering
        from vmas.simulator.utils import Color

        line = rendering.Line(
            self.world.landmarks[0].state.pos[env_index].tolist(),
            self.world.landmarks[1].state.pos[env_index].tolist(),
            width=1,
        )
        line.set_color(*Color.GRAY.value, alpha=0.5)
        return [line]
