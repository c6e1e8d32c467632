"""Joint-ratio PPO (paper 004, Equation 7 and Algorithm 1)."""

from __future__ import annotations

import torch

from marl_lightning.objectives.masking import masked_mean_per_agent
from marl_lightning.objectives.ppo import MultiAgentPPOLoss, PolicyStep
from marl_lightning.objectives.surrogate import clipped_surrogate, outside_clip_range

# exp() of a sum of many agents' log-ratios overflows float32 near 88. Bounding log λ to ±20 keeps the loss
# finite, but it is not free: for A < 0 and λ > 1 + ε (or A > 0 and λ < 1 − ε) the objective takes the
# unclipped branch λA, which has a gradient; beyond e^±20 the clamp makes λ constant there, so the gradient
# that would pull such a sample's joint ratio back is lost (docs/algorithms.md, "Where a default differs").
_MAX_JOINT_LOG_RATIO = 20.0


def joint_log_ratio(log_ratio: torch.Tensor) -> torch.Tensor:
    """log λ = log Π_k π̃_k(a_k|s_k)/π_k(a_k|s_k) = Σ_k log-ratio_k. Shapes: [B, A] -> [B]."""
    return log_ratio.sum(-1)


class JointRatioPPOLoss(MultiAgentPPOLoss):
    """max E[min(λ A, clip(λ, 1 − ε, 1 + ε) A)] with the joint ratio λ and a centralised advantage (Eq. 7).

    The centralised advantage A(s, a) is the mean over present agents of the per-agent advantages, which a
    centralised critic on a team reward estimates alike for every agent. Absent agents contribute a
    log-ratio of 0 (a factor of 1) to λ.
    """

    def policy_objective(self, step: PolicyStep) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Minus Equation 7 of paper 004. Shapes: step.log_ratio, step.advantage [B, A] -> scalar, [A]."""
        log_joint = joint_log_ratio(step.log_ratio).clamp(-_MAX_JOINT_LOG_RATIO, _MAX_JOINT_LOG_RATIO)
        ratio = log_joint.exp()  # [B]
        if step.mask is None:
            advantage = step.advantage.mean(-1)  # [B]
        else:
            advantage = step.advantage.sum(-1) / step.mask.sum(-1).clamp_min(1)
        surrogate = clipped_surrogate(ratio, advantage, self.clip_epsilon)
        clipped = outside_clip_range(ratio.detach(), self.clip_epsilon)  # [B]
        clipped = clipped.unsqueeze(-1).expand_as(step.log_ratio)
        clip_fraction = masked_mean_per_agent(clipped, step.mask)  # [A], the same for every agent
        return -surrogate.mean(), {"clip_fraction": clip_fraction}
