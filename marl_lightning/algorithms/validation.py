"""Checks of user settings that span the model and the data module."""

from __future__ import annotations

from marl_lightning.errors import ConfigError


def check_minibatching(minibatch_size: int, frames_per_batch: int) -> None:
    """Minibatches must tile an iteration exactly."""
    if frames_per_batch % minibatch_size:
        divisors = [d for d in range(1, frames_per_batch + 1) if frames_per_batch % d == 0]
        near = min(divisors, key=lambda d: abs(d - minibatch_size))
        raise ConfigError(
            f"model.minibatch_size ({minibatch_size}) must divide data.frames_per_batch "
            f"({frames_per_batch}). Use e.g. --model.minibatch_size {near}."
        )
