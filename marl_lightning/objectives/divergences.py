"""Exact per-state divergences between the collecting policy and the current one.

The batch holds the collecting policy's parameters (``logits``, or ``loc``/``scale`` of the Gaussian under
the tanh), written by the actor at collection time; the loss recomputes them with gradients.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from marl_lightning.core import keys
from marl_lightning.objectives.masking import agent_mask, masked_mean_per_agent

PARAM_KEYS = (keys.LOGITS, keys.LOC, keys.SCALE)


def policy_params(td: TensorDictBase) -> TensorDictBase:
    """The distribution parameters present in ``td`` (``logits`` or ``loc`` and ``scale``), as a view."""
    return td.select(*PARAM_KEYS, strict=False)


def kl_divergence(old: TensorDictBase, new: TensorDictBase) -> torch.Tensor:
    """KL(π_old(·|s) ‖ π(·|s)) per state and agent, exactly.

    Categorical: Σ_a p_old(a) (log p_old(a) − log p(a)). Squashed Gaussian: the KL of the Gaussians under
    the tanh, summed over action components; KL is invariant under the tanh bijection (and the affine map
    to [low, high]), so this is the KL of the squashed policies themselves.

    Shapes:
        logits [B, A, n] or loc/scale [B, A, d] -> [B, A].
    """
    if keys.LOGITS in old.keys(True):
        log_p_old = torch.log_softmax(old.get(keys.LOGITS), -1)
        log_p = torch.log_softmax(new.get(keys.LOGITS), -1)
        return (log_p_old.exp() * (log_p_old - log_p)).sum(-1)
    loc_old, scale_old = old.get(keys.LOC), old.get(keys.SCALE)
    loc, scale = new.get(keys.LOC), new.get(keys.SCALE)
    variance_ratio = (scale_old / scale).pow(2)
    kl = 0.5 * (variance_ratio + ((loc - loc_old) / scale).pow(2) - 1.0 - variance_ratio.log())
    return kl.sum(-1)


def total_variation(old: TensorDictBase, new: TensorDictBase, log_ratio: torch.Tensor) -> torch.Tensor:
    """D_TV(π_old(·|s), π(·|s)) per state and agent.

    Categorical: exact, Proposition 5.1 of the trust-region paper (004): Σ_{a: π(a) ≥ π_old(a)} (π(a) −
    π_old(a)), which equals ½ Σ_a |π(a) − π_old(a)|. Continuous: D_TV = E_{a~π_old}[(1 − π(a)/π_old(a))⁺]
    (the same identity written as an expectation), estimated with the one action the collecting policy took
    at that state, ``log_ratio`` = log π(a) − log π_old(a): unbiased for each state, so its batch mean is
    an unbiased estimate of the average D_TV the paper reports; invariant under the tanh like the ratio.

    Shapes:
        logits [B, A, n] or loc/scale [B, A, d]; log_ratio [B, A] -> [B, A].
    """
    if keys.LOGITS in old.keys(True):
        p_old = torch.softmax(old.get(keys.LOGITS), -1)
        p = torch.softmax(new.get(keys.LOGITS), -1)
        return (p - p_old).clamp_min(0.0).sum(-1)
    return (1.0 - log_ratio.exp()).clamp_min(0.0)


def policy_movement(
    flat: TensorDictBase,
    new: TensorDictBase,
    dist: torch.distributions.Distribution,
    entropy: torch.Tensor,
    with_trust_region: bool,
) -> dict[str, torch.Tensor]:
    """How far the updated policy π_new moved from the collecting one π_old, averaged over an iteration.

    Always ``kl``, the exact average KL(π_old ‖ π_new) per agent (:func:`kl_divergence`), and ``entropy``
    (the given per-state entropy, averaged). With ``with_trust_region`` also ``tv``, the average
    D_TV(π_old, π_new) per agent (exact for discrete actions, Proposition 5.1 of paper 004; estimated for
    continuous ones, :func:`total_variation`), its sum over agents ``tv_sum`` (the centralised trust
    region) and the range of the joint ratio Π_i r_i. Absent agents count in no mean and no joint ratio.

    Shapes:
        flat [N] (π_old's parameters, actions and their log-probs, the mask), new [N] (π_new's parameters),
        dist over [N, A], entropy [N, A] -> kl, entropy, tv [A]; tv_sum, joint_ratio_min/max scalars.
    """
    old = policy_params(flat)
    mask = agent_mask(flat)
    stats = {
        "kl": masked_mean_per_agent(kl_divergence(old, policy_params(new)), mask),
        "entropy": masked_mean_per_agent(entropy, mask),
    }
    if with_trust_region:
        log_ratio = dist.log_prob(flat.get(keys.ACTION)) - flat.get(keys.ACTION_LOG_PROB)  # [N, A]
        if mask is not None:
            log_ratio = torch.where(mask, log_ratio, 0.0)
        joint_ratio = log_ratio.sum(-1).exp()  # [N]
        tv = masked_mean_per_agent(total_variation(old, policy_params(new), log_ratio), mask)
        stats |= {"tv": tv, "tv_sum": tv.sum(), "joint_ratio_min": joint_ratio.min(),
                  "joint_ratio_max": joint_ratio.max()}
    return stats
