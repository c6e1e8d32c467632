"""Losses and advantage estimators: pure maths on TensorDicts, no Lightning."""

from marl_lightning.objectives.advantages import (
    episode_ends,
    gae,
    standardise_per_agent,
    write_advantages,
    write_gae,
)
from marl_lightning.objectives.divergences import (
    PARAM_KEYS,
    kl_divergence,
    policy_movement,
    policy_params,
    total_variation,
)
from marl_lightning.objectives.masking import agent_mask, masked_mean, masked_mean_per_agent
from marl_lightning.objectives.ppo import LossCriticType, MultiAgentPPOLoss, PolicyStep
from marl_lightning.objectives.surrogate import clipped_surrogate, outside_clip_range
from marl_lightning.objectives.value_loss import value_loss

__all__ = [
    "PARAM_KEYS",
    "LossCriticType",
    "MultiAgentPPOLoss",
    "PolicyStep",
    "agent_mask",
    "clipped_surrogate",
    "episode_ends",
    "gae",
    "kl_divergence",
    "masked_mean",
    "masked_mean_per_agent",
    "outside_clip_range",
    "policy_movement",
    "policy_params",
    "standardise_per_agent",
    "total_variation",
    "value_loss",
    "write_advantages",
    "write_gae",
]
