"""Checks of user settings: one paragraph naming the field, the value and the fix (``ConfigError``)."""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch import Trainer

from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.base import EnvSpec
from marl_lightning.launch.distributed import RolloutDDPStrategy


def check_minibatching(minibatch_size: int, frames_per_batch: int) -> None:
    """Minibatches must tile an iteration exactly."""
    if frames_per_batch % minibatch_size:
        divisors = [d for d in range(1, frames_per_batch + 1) if frames_per_batch % d == 0]
        near = min(divisors, key=lambda d: abs(d - minibatch_size))
        raise ConfigError(
            f"model.minibatch_size ({minibatch_size}) must divide data.frames_per_batch "
            f"({frames_per_batch}). Use e.g. --model.minibatch_size {near}."
        )


def check_budget(total_frames: int, frames_per_batch: int) -> None:
    """The budget must hold at least one iteration."""
    if total_frames < frames_per_batch:
        raise ConfigError(
            f"model.total_frames ({total_frames}) must be at least data.frames_per_batch "
            f"({frames_per_batch}), one iteration."
        )


def check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"model.{name} must be > 0, got {value}. Pass e.g. --model.{name} <positive>.")


def check_at_least_one(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"model.{name} must be >= 1, got {value}.")


def check_unit_interval(**values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"model.{name} must lie in [0, 1], got {value}.")


def check_action_kind(algorithm: str, env_spec: EnvSpec, supported: Sequence[str]) -> None:
    kind = "continuous" if env_spec.continuous else "discrete"
    if kind not in supported:
        raise ConfigError(
            f"{algorithm} cannot handle the {kind} actions of task {env_spec.name!r}: it supports "
            f"{' and '.join(supported)} actions. Choose a task with such actions or another algorithm."
        )


def check_ppo_settings(
    algorithm: str,
    env_spec: EnvSpec,
    supported_actions: Sequence[str],
    *,
    total_frames: int,
    lr: float,
    adam_eps: float,
    clip_epsilon: float,
    clip_budget: float | None,
    entropy_coeff: float,
    critic_coeff: float,
    gamma: float,
    lmbda: float,
    num_epochs: int,
    minibatch_size: int,
    max_grad_norm: float,
    max_skips_in_a_row: int = 1,
) -> None:
    """Every single-field rule of :class:`~marl_lightning.algorithms.MultiAgentPPOModule`'s arguments."""
    check_action_kind(algorithm, env_spec, supported_actions)
    check_at_least_one(total_frames=total_frames, num_epochs=num_epochs, minibatch_size=minibatch_size,
                       max_skips_in_a_row=max_skips_in_a_row)
    check_positive(lr=lr, clip_epsilon=clip_epsilon, max_grad_norm=max_grad_norm, adam_eps=adam_eps)
    if clip_budget is not None:
        check_positive(clip_budget=clip_budget)
    check_unit_interval(gamma=gamma, lmbda=lmbda)
    if entropy_coeff < 0 or critic_coeff < 0:
        raise ConfigError(
            f"model.entropy_coeff ({entropy_coeff}) and model.critic_coeff ({critic_coeff}) must be >= 0."
        )


def check_strategy(trainer: Trainer, module: object | None = None) -> None:
    """Several processes need the rollout strategy, which all-reduces every backward pass's gradients, and
    an algorithm that can run on them (``IterationModule.single_process_reason`` is None)."""
    if trainer.world_size <= 1:
        return
    reason = getattr(module, "single_process_reason", None)
    if reason is not None:
        raise ConfigError(
            f"{type(module).__name__} runs on one process, not {trainer.world_size}: {reason} Run it without "
            "--trainer.strategy ddp (a grid runs seeds in parallel)."
        )
    if not isinstance(trainer.strategy, RolloutDDPStrategy):
        raise ConfigError(
            f"trainer.strategy: {type(trainer.strategy).__name__} with {trainer.world_size} processes would "
            "synchronise one gradient of the many in an on-policy update. Use --trainer.strategy rollout_ddp "
            "(the CLI maps 'ddp' to it)."
        )
