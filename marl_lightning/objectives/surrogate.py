"""PPO's clipped surrogate, the one function every clipped objective here uses."""

from __future__ import annotations

import torch


def clipped_surrogate(
    ratio: torch.Tensor, advantage: torch.Tensor, clip_epsilon: float | torch.Tensor
) -> torch.Tensor:
    """min(r·A, clip(r, 1 − ε, 1 + ε)·A), elementwise (Schulman et al. 2017, Eq. 7; paper 004, Eq. 4/5 with
    per-agent ratios, Eq. 7 with the joint ratio). Shapes: ratio, advantage broadcastable -> their shape."""
    return torch.minimum(ratio * advantage, ratio.clamp(1.0 - clip_epsilon, 1.0 + clip_epsilon) * advantage)


def outside_clip_range(ratio: torch.Tensor, clip_epsilon: float | torch.Tensor) -> torch.Tensor:
    """Whether |r − 1| > ε (what the clip fraction counts), as floats. Shapes: [...] -> [...]."""
    return ((ratio - 1.0).abs() > clip_epsilon).float()
