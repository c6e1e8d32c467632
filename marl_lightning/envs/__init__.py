"""Environment adapters. Each builds a TorchRL ``EnvBase`` in the one batch layout (group ``"agents"``)."""

from marl_lightning.envs.base import EnvFactory, EnvSpec
from marl_lightning.envs.pettingzoo import PettingZoo
from marl_lightning.envs.ratio_game import RatioGame, RatioGameTask, ratio_game_value
from marl_lightning.envs.stochastic_game import StochasticGame, StochasticGameTask
from marl_lightning.envs.vmas import Vmas

__all__ = [
    "EnvFactory",
    "EnvSpec",
    "PettingZoo",
    "RatioGame",
    "RatioGameTask",
    "StochasticGame",
    "StochasticGameTask",
    "Vmas",
    "ratio_game_value",
]
