"""Advantage estimation for multi-agent batches."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate

from marl_lightning.core import keys
from marl_lightning.objectives.masking import agent_mask


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


def episode_ends(batch: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-agent ``done`` and ``terminated`` of each step, where an agent that is gone at t+1 (PettingZoo
    ``use_mask``) ended its episode at t: no bootstrap from its empty next observation.

    Shapes: batch [B, T] -> done, terminated [B, T, A, 1] bool.
    """
    done = batch.get(keys.nxt(keys.DONE))
    terminated = batch.get(keys.nxt(keys.TERMINATED))
    next_present = agent_mask(batch.get(keys.NEXT))  # [B, T, A] or None
    if next_present is not None:
        gone = ~next_present.unsqueeze(-1)
        done, terminated = done | gone, terminated | gone
    return done, terminated


def write_advantages(batch: TensorDictBase, advantage: torch.Tensor, value_target: torch.Tensor) -> None:
    """Store ``("agents", "advantage")`` and ``("agents", "value_target")``; absent agents' entries are left
    out of every loss and set to 0 here so they stay finite.

    Shapes: batch [B, T]; advantage, value_target [B, T, A, 1].
    """
    present = agent_mask(batch)
    if present is not None:
        advantage = torch.where(present.unsqueeze(-1), advantage, 0.0)
        value_target = torch.where(present.unsqueeze(-1), value_target, 0.0)
    batch.set(keys.ADVANTAGE, advantage)
    batch.set(keys.VALUE_TARGET, value_target)


def write_gae(
    batch: TensorDictBase, value: torch.Tensor, next_value: torch.Tensor, gamma: float, lmbda: float
) -> None:
    """:func:`gae` from the batch's rewards and episode ends (:func:`episode_ends`) and the given values,
    stored by :func:`write_advantages`.

    Shapes: batch [B, T]; value, next_value [B, T, A, 1]; writes advantage and value_target [B, T, A, 1].
    """
    done, terminated = episode_ends(batch)
    advantage, value_target = gae(
        reward=batch.get(keys.nxt(keys.REWARD)), done=done, terminated=terminated, value=value,
        next_value=next_value, gamma=gamma, lmbda=lmbda,
    )
    write_advantages(batch, advantage, value_target)
