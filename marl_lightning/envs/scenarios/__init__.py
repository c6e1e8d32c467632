"""Our own VMAS scenarios: the DPO paper's three MPE tasks (Sec. 4.2, App. A.1) on one MPE base
(``_mpe.py``): simple spread as mpe2 defines it, and the formation tasks line control and circle control.

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
from marl_lightning.envs.scenarios.simple_spread import SimpleSpread, SimpleSpreadParams

SCENARIOS: dict[str, type[BaseScenario]] = {
    "line_control": LineControl,
    "circle_control": CircleControl,
    "mpe_simple_spread": SimpleSpread,
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
    "SimpleSpread",
    "SimpleSpreadParams",
    "min_cost_assignment",
]
