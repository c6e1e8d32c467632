"""Advantage estimation for multi-agent batches."""

from __future__ import annotations

import torch
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate


def gae(
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor,
    value: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    lmbda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16) per agent, via TorchRL.

    δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t);  A_t = Σ_l (γλ)^l δ_{t+l}, the sum cut at ``done``.
    ``done`` without ``terminated`` (a truncation) stops the sum but keeps the bootstrap V(s_{t+1}).

    Shapes:
        reward, done, terminated, value, next_value: [B, T, A, 1] -> advantage, value_target: [B, T, A, 1].
    """
    if not (reward.shape == done.shape == terminated.shape == value.shape == next_value.shape):
        raise ValueError(
            "gae expects reward, done, terminated, value and next_value of one shape [B, T, A, 1]; got "
            f"{tuple(reward.shape)}, {tuple(done.shape)}, {tuple(terminated.shape)}, "
            f"{tuple(value.shape)}, {tuple(next_value.shape)}. Expand team signals to agents first."
        )
    return vec_generalized_advantage_estimate(
        gamma, lmbda, value, next_value, reward, done, terminated, time_dim=-3
    )


def standardise_per_agent(
    advantage: torch.Tensor, eps: float = 1e-8, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Zero mean, unit variance for each agent separately, over every other dimension.

    With ``mask``, the statistics use present entries only and absent entries come out 0.

    Shapes:
        advantage: [..., A, 1], mask: [..., A] bool -> [..., A, 1].
    """
    if mask is None:
        flat = advantage.reshape(-1, *advantage.shape[-2:])  # [N, A, 1]
        return (advantage - flat.mean(0)) / (flat.std(0) + eps)
    present = mask.unsqueeze(-1).reshape(-1, *advantage.shape[-2:])  # [N, A, 1]
    flat = torch.where(present, advantage.reshape(present.shape), 0.0)
    count = present.sum(0).clamp_min(1)
    mean = flat.sum(0) / count
    var = torch.where(present, flat - mean, 0.0).pow(2).sum(0) / (count - 1).clamp_min(1)
    out = (advantage - mean) / (var.sqrt() + eps)
    return torch.where(mask.unsqueeze(-1), out, 0.0)
