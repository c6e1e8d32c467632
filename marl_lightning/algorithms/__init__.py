"""One LightningModule per algorithm over the shared machinery of ``base.py``."""

from marl_lightning.algorithms.base import MultiAgentPPOModule
from marl_lightning.algorithms.ippo import IPPO
from marl_lightning.algorithms.mappo import MAPPO

__all__ = ["IPPO", "MAPPO", "MultiAgentPPOModule"]
