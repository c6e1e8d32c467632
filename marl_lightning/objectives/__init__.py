"""Losses and advantage estimators: pure maths on TensorDicts, no Lightning."""

from marl_lightning.objectives.advantages import gae, standardise_per_agent
from marl_lightning.objectives.ppo import MultiAgentPPOLoss

__all__ = ["MultiAgentPPOLoss", "gae", "standardise_per_agent"]
