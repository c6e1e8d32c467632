"""The built-in stochastic game, crashing on one rank: ``RuntimeError`` at a chosen env step of rank
``rank`` (the process group's rank; no crash without a group)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, Transform, TransformedEnv
from typing_extensions import override

from marl_lightning.envs.stochastic_game import StochasticGameTask

MESSAGE = "simulated simulator crash"


class _Crash(Transform):
    def __init__(self, rank: int, at_step: int) -> None:
        super().__init__()
        self.rank, self.at_step, self.steps = rank, at_step, 0

    @override
    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        step, self.steps = self.steps, self.steps + 1
        if step == self.at_step and dist.is_initialized() and dist.get_rank() == self.rank:
            raise RuntimeError(f"{MESSAGE} on rank {self.rank} at step {step}")
        return next_tensordict


class CrashingStochasticGame(StochasticGameTask):
    def __init__(self, rank: int = 1, at_step: int = 30, horizon: int = 20) -> None:
        super().__init__(horizon=horizon)
        self.rank, self.at_step = rank, at_step

    @override
    def make(self, num_envs: int, device: torch.device | str, seed: int) -> EnvBase:
        return TransformedEnv(super().make(num_envs, device, seed), _Crash(self.rank, self.at_step))
