"""VMAS navigation whose env steps wait while a gate file exists: a test holds a running fit in place
(its other threads go on) by creating the file, and lets it go on by removing it, instead of racing the
fit's pace on a loaded machine."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, Transform, TransformedEnv
from typing_extensions import override

from marl_lightning.envs.vmas import Vmas

POLL_S = 0.02


class _Gate(Transform):
    def __init__(self, gate: Path) -> None:
        super().__init__()
        self.gate = gate

    @override
    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        while self.gate.exists():
            time.sleep(POLL_S)
        return next_tensordict


class GatedVmas(Vmas):
    """:class:`~marl_lightning.envs.vmas.Vmas`, each step waiting while the file ``gate`` exists."""

    def __init__(self, gate: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    @override
    def make(self, num_envs: int, device: torch.device | str, seed: int) -> EnvBase:
        return TransformedEnv(super().make(num_envs, device, seed), _Gate(Path(self.gate)))
