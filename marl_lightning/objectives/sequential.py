"""Agent m's policy step of sequential multi-agent PPO (paper 002, Algorithm 1 and Equation 3)."""

from __future__ import annotations

from typing import Literal

import torch

from marl_lightning.core import keys
from marl_lightning.objectives.divergences import kl_divergence
from marl_lightning.objectives.masking import masked_mean, masked_mean_per_agent
from marl_lightning.objectives.ppo import MultiAgentPPOLoss, PolicyStep
from marl_lightning.objectives.surrogate import clipped_surrogate, outside_clip_range

Regulariser = Literal["kl", "clip"]


class SequentialPPOLoss(MultiAgentPPOLoss):
    """The objective of the agent being updated, given the agents updated before it in this iteration.

    Called through :meth:`actor_loss` with ``agent=m``, so every mean runs over agent m's entries alone:

        kl (the mirror-descent step of Equation 3):
            − mean[ M_m · r_m · A ] + β_k · mean_s KL(π^m(·|s) ‖ π^m_k(·|s))
        clip:
            − mean[ min(M_m · r_m · A, M_m · clip(r_m, 1 ± ε) · A) ]

    with r_m = π^m/π^m_k on the collected actions, A the joint advantage (``"joint_advantage"`` [B]) and
    M_m = Π_{j updated before m} r_j^new (``"earlier_ratio"`` [B]), held fixed during m's update:
    E_{π_k}[M_m r_m A] estimates ⟨A^{1:m}, π^m⟩ with the earlier agents at their new policies, the term of
    Lemma 4.1's agent-by-agent decomposition that Equation 3 improves. The KL is exact and in the paper's
    direction, KL(π_new ‖ π_old) (the reverse of PPO's). β_k is the ``beta`` buffer, set by the module
    before each iteration. The critic's loss is the shared one (:meth:`critic_loss`).
    """

    def __init__(self, *args, regulariser: Regulariser = "kl", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.regulariser = regulariser
        self.register_buffer("beta", torch.tensor(1.0))

    def policy_objective(self, step: PolicyStep) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Shapes: step.log_ratio [B, A] (0 outside agent m); joint advantage, earlier ratio [B] -> scalar."""
        ratio = step.log_ratio.exp()  # [B, A]
        weighted = (step.batch.get(keys.EARLIER_RATIO) * step.batch.get(keys.JOINT_ADVANTAGE)).unsqueeze(-1)
        if self.regulariser == "clip":
            loss = -masked_mean(clipped_surrogate(ratio, weighted, self.clip_epsilon), step.mask)
        else:
            kl = kl_divergence(step.new, step.old)  # KL(π_new ‖ π_old) [B, A]
            loss = -masked_mean(ratio * weighted, step.mask) + self.beta * masked_mean(kl, step.mask)
        outside = outside_clip_range(ratio.detach(), self.clip_epsilon)
        clip_fraction = masked_mean_per_agent(outside, step.mask)
        return loss, {"clip_fraction": clip_fraction, "beta": self.beta.detach().clone()}
