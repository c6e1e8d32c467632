"""marl_lightning: cooperative multi-agent trust-region policy gradients on PyTorch Lightning."""

from marl_lightning.algorithms import (
    DPO,
    IPPO,
    JRPPO,
    MAPPO,
    PERLAIPPO,
    PERLAMAPPO,
    MultiAgentPPOModule,
    PessimisticSequentialPPO,
    SequentialPPO,
)
from marl_lightning.data import RolloutDataModule

__all__ = [
    "DPO",
    "IPPO",
    "JRPPO",
    "MAPPO",
    "PERLAIPPO",
    "PERLAMAPPO",
    "MultiAgentPPOModule",
    "PessimisticSequentialPPO",
    "RolloutDataModule",
    "SequentialPPO",
]
