"""One LightningModule per algorithm over the shared machinery of ``base.py``."""

from marl_lightning.algorithms.base import MultiAgentPPOModule
from marl_lightning.algorithms.dpo import DPO
from marl_lightning.algorithms.ippo import IPPO
from marl_lightning.algorithms.jrppo import JRPPO
from marl_lightning.algorithms.mappo import MAPPO
from marl_lightning.algorithms.perla import PERLAIPPO, PERLAMAPPO
from marl_lightning.algorithms.pessimistic import PessimisticSequentialPPO
from marl_lightning.algorithms.sequential import SequentialPPO

__all__ = [
    "DPO",
    "IPPO",
    "JRPPO",
    "MAPPO",
    "PERLAIPPO",
    "PERLAMAPPO",
    "MultiAgentPPOModule",
    "PessimisticSequentialPPO",
    "SequentialPPO",
]
