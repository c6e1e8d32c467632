"""Means that skip agents the env marks as absent (PettingZoo ``use_mask``: dead or not acting).

Entries of absent agents are selected away with ``torch.where``, never multiplied by zero, so a NaN or an
infinity in them cannot reach a loss or a gradient.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from marl_lightning.core import keys


def agent_mask(batch: TensorDictBase) -> torch.Tensor | None:
    """``("agents", "mask")`` of the batch ([..., A] bool, True = present), or None when the env has none."""
    return batch.get(keys.MASK, None)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` over present entries (all entries when ``mask`` is None). x, mask: [B, A] -> scalar."""
    if mask is None:
        return x.mean()
    kept = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return kept.sum() / mask.sum().clamp_min(1)


def masked_mean_per_agent(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-agent mean over the batch, present entries only. x, mask: [B, A] -> [A] (0 for an absent agent)."""
    if mask is None:
        return x.mean(0)
    kept = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return kept.sum(0) / mask.sum(0).clamp_min(1)
