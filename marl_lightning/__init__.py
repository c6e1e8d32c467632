"""marl_lightning: cooperative multi-agent trust-region policy gradients on PyTorch Lightning."""

from marl_lightning import algorithms
from marl_lightning.algorithms import *  # noqa: F403 (the algorithm classes, listed in algorithms.__all__)
from marl_lightning.data import RolloutDataModule

__all__ = [*algorithms.__all__, "RolloutDataModule"]
