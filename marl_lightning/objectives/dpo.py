"""DPO's decentralised surrogate with adaptive KL penalties (paper 003, Equation 20)."""

from __future__ import annotations

import torch

from marl_lightning.objectives.divergences import kl_divergence
from marl_lightning.objectives.masking import masked_mean_per_agent
from marl_lightning.objectives.ppo import MultiAgentPPOLoss, PolicyStep
from marl_lightning.objectives.surrogate import clipped_surrogate, outside_clip_range


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """√x with a finite gradient everywhere: 0 at x = 0 (where √ has an infinite slope).

    0 is a valid subgradient there: around the old policy √KL grows like a norm of the parameter step.
    """
    positive = x > 0
    return torch.where(positive, x.clamp_min(torch.finfo(x.dtype).tiny).sqrt(), torch.zeros_like(x))


class DPOLoss(MultiAgentPPOLoss):
    """Agent i minimises −(1/N)·L^i + β1^i·√KL + β2^i·KL, KL = KL(π_old^i ‖ π^i) (paper 003, Equation 20).

    L^i is agent i's importance-weighted surrogate E_{a~π_old}[r_i A^i] (Eq. 7 of 003 written with samples),
    optionally clipped like PPO's. The KL is exact per state (``divergences.kl_divergence``). β1, β2 are
    per-agent buffers [A] that ``callbacks.AdaptiveBeta`` updates between iterations (Eq. 21).

    Switches for what the paper leaves open (defaults as the paper):
        scale_by_n_agents: the 1/N factor on L^i (on).
        sqrt_kl_per_state: √KL taken per state, then averaged (True), or √ of the state-averaged KL (False).
        clip: clip the ratio in L^i at ε (off).
        use_sqrt_kl / use_kl: keep the β1 √KL / β2 KL term; off gives the ablations DPO w/o sqrt (β1 = 0)
            and DPO w/o KL (β2 = 0): the coefficient starts at 0, and ``callbacks.AdaptiveBeta`` keeps a
            0 at 0.
    The total is the mean of the agents' losses, so at r = 1 and KL = 0 it equals −mean(A)/N.
    """

    def __init__(
        self,
        *args,
        n_agents: int,
        beta_init: float = 0.01,
        scale_by_n_agents: bool = True,
        sqrt_kl_per_state: bool = True,
        clip: bool = False,
        use_sqrt_kl: bool = True,
        use_kl: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("beta1", torch.full((n_agents,), beta_init if use_sqrt_kl else 0.0))
        self.register_buffer("beta2", torch.full((n_agents,), beta_init if use_kl else 0.0))
        self.scale_by_n_agents = scale_by_n_agents
        self.sqrt_kl_per_state = sqrt_kl_per_state
        self.clip = clip

    def policy_objective(self, step: PolicyStep) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Equation 20 of paper 003, averaged over the agents.

        Shapes:
            step.log_ratio, step.advantage: [B, A]; beta1, beta2: [A] -> scalar loss, diagnostics [A].
        """
        ratio = step.log_ratio.exp()
        if self.clip:
            surrogate = clipped_surrogate(ratio, step.advantage, self.clip_epsilon)  # [B, A]
        else:
            surrogate = ratio * step.advantage
        n_agents = step.log_ratio.shape[-1]
        scale = 1.0 / n_agents if self.scale_by_n_agents else 1.0
        kl = kl_divergence(step.old, step.new)  # [B, A]
        if step.mask is not None:
            kl = torch.where(step.mask, kl, 0.0)
        mean_kl = masked_mean_per_agent(kl, step.mask)  # [A]
        if self.sqrt_kl_per_state:
            sqrt_kl = masked_mean_per_agent(safe_sqrt(kl), step.mask)
        else:
            sqrt_kl = safe_sqrt(mean_kl)
        per_agent = (
            -scale * masked_mean_per_agent(surrogate, step.mask) + self.beta1 * sqrt_kl + self.beta2 * mean_kl
        )  # [A]
        outside = outside_clip_range(ratio.detach(), self.clip_epsilon)
        clip_fraction = masked_mean_per_agent(outside, step.mask)
        return per_agent.mean(), {"clip_fraction": clip_fraction}
