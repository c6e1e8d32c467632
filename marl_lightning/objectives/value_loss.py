"""The critic's regression loss, shared by every objective that fits a critic."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from marl_lightning.objectives.masking import masked_mean

LossCriticType = Literal["l1", "l2", "smooth_l1"]


def value_loss(
    value: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, kind: LossCriticType
) -> torch.Tensor:
    """Mean distance between the critic's estimate and its target over present agents.

    Absent entries of ``target`` must already be finite (they are selected away, never multiplied by 0).

    Shapes:
        value, target: [B, A, 1]; mask: [B, A] bool or None -> scalar.
    """
    if kind == "l2":
        distance = (value - target).pow(2)
    elif kind == "l1":
        distance = (value - target).abs()
    elif kind == "smooth_l1":
        distance = F.smooth_l1_loss(value, target, reduction="none")
    else:
        raise ValueError(f"loss_critic_type must be one of l1, l2, smooth_l1; got {kind!r}.")
    return masked_mean(distance.squeeze(-1), mask)
