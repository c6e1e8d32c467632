"""Seeds derived per rank and iteration, so a resumed run draws the same numbers as an uninterrupted one."""

from __future__ import annotations

import random

import numpy as np
import torch

_MIX = (1_000_003, 7919)


def derived_seed(seed: int, rank: int, iteration: int) -> int:
    """A 31-bit seed unique to (seed, rank, iteration)."""
    return (seed * _MIX[0] + rank * _MIX[1] + iteration * 104_729) % (2**31 - 1)


def seed_all(seed: int) -> None:
    """Seed torch (all devices), numpy and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
