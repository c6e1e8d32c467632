"""marl_lightning: cooperative multi-agent trust-region policy gradients on PyTorch Lightning."""

from marl_lightning.algorithms import IPPO, MAPPO, MultiAgentPPOModule
from marl_lightning.data import RolloutDataModule

__all__ = ["IPPO", "MAPPO", "MultiAgentPPOModule", "RolloutDataModule"]
