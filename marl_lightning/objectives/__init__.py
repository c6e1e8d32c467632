"""Losses and advantage estimators: pure maths on TensorDicts, no Lightning."""

from marl_lightning.objectives.advantages import gae, standardise_per_agent
from marl_lightning.objectives.divergences import PARAM_KEYS, kl_divergence, policy_params, total_variation
from marl_lightning.objectives.masking import agent_mask, masked_mean, masked_mean_per_agent
from marl_lightning.objectives.ppo import MultiAgentPPOLoss, PolicyStep

__all__ = [
    "PARAM_KEYS",
    "MultiAgentPPOLoss",
    "PolicyStep",
    "kl_divergence",
    "policy_params",
    "total_variation",
    "agent_mask",
    "gae",
    "masked_mean",
    "masked_mean_per_agent",
    "standardise_per_agent",
]
