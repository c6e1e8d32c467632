"""Seeds derived per rank and iteration, so a resumed run draws the same numbers as an uninterrupted one."""

from __future__ import annotations

import os
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


def run_seed() -> int:
    """The run's base seed: the one given to ``seed_everything`` (Lightning's ``PL_GLOBAL_SEED``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def rng_states() -> dict:
    """torch, numpy and python RNG states as tensors and plain values (loadable with ``weights_only``)."""
    name, mt_keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(mt_keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def restore_rng_states(states: dict) -> None:
    """Undo :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state((
        numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
        numpy_state["has_gauss"], numpy_state["cached_gaussian"],
    ))
    random.setstate(states["python"])
