"""Our own VMAS scenarios: the formation tasks of the DPO paper's MPE experiments (Sec. 4.2, App. A.1).

:class:`~marl_lightning.envs.Vmas` builds them by name, like VMAS's own (``scenario: line_control``).
"""

from __future__ import annotations

from vmas.simulator.scenario import BaseScenario

from marl_lightning.envs.scenarios._formation import (
    MAX_ENUMERATED_AGENTS,
    FormationParams,
    FormationScenario,
    min_cost_assignment,
)
from marl_lightning.envs.scenarios.circle_control import CircleControl, CircleControlParams
from marl_lightning.envs.scenarios.line_control import LineControl, LineControlParams

SCENARIOS: dict[str, type[BaseScenario]] = {
    "line_control": LineControl,
    "circle_control": CircleControl,
}

__all__ = [
    "MAX_ENUMERATED_AGENTS",
    "SCENARIOS",
    "CircleControl",
    "CircleControlParams",
    "FormationParams",
    "FormationScenario",
    "LineControl",
    "LineControlParams",
    "min_cost_assignment",
]
