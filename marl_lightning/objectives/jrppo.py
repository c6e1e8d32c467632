"""Joint-ratio PPO (paper 004, Equation 7 and Algorithm 1)."""

from __future__ import annotations

import torch

from marl_lightning.objectives.masking import masked_mean_per_agent
from marl_lightning.objectives.ppo import MultiAgentPPOLoss, PolicyStep

# exp() of a sum of many log-ratios overflows long before clipping matters; ratios beyond e^±20 are clipped
# anyway (the clipped branch has no gradient), so bounding the log keeps the loss finite without changing it.
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
        eps = self.clip_epsilon
        surrogate = torch.minimum(ratio * advantage, ratio.clamp(1.0 - eps, 1.0 + eps) * advantage)
        with torch.no_grad():
            clipped = ((ratio - 1.0).abs() > eps).float().unsqueeze(-1).expand_as(step.log_ratio)
            clip_fraction = masked_mean_per_agent(clipped, step.mask)  # [A], the same for every agent
        return -surrogate.mean(), {"clip_fraction": clip_fraction}
