"""The data layer: TorchRL env + collector as a Lightning data module."""

from marl_lightning.data.rollout import RolloutDataModule
from marl_lightning.data.team_signals import expand_team_signals

__all__ = ["RolloutDataModule", "expand_team_signals"]
