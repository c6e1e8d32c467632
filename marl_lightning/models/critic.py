"""State-value critics: centralised (MAPPO) or decentralised (IPPO)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import MultiAgentMLP

from marl_lightning.core import keys
from marl_lightning.envs.base import EnvSpec
from marl_lightning.models.activations import Tanh
from marl_lightning.models.mlp import agent_mlp


class _StatePerAgent(nn.Module):
    """Feeds the env's global state to every agent's head: [B, S] -> [B, A, 1]."""

    def __init__(self, mlp: MultiAgentMLP, n_agents: int) -> None:
        super().__init__()
        self.mlp = mlp
        self.n_agents = n_agents

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        per_agent = state.unsqueeze(-2).expand(*state.shape[:-1], self.n_agents, state.shape[-1])
        return self.mlp(per_agent)


def build_critic(
    spec: EnvSpec,
    cells: Sequence[int],
    share_params: bool,
    centralised: bool,
    activation: type[nn.Module] = Tanh,
) -> TensorDictModule:
    """V_i for every agent, written to ``("agents", "state_value")``.

    A centralised critic sees the env's global state when it has one, else all agents' observations
    (MAPPO); a decentralised one sees only agent i's observation (IPPO).

    Shapes:
        observation: [B, A, F] (state: [B, S]) -> state_value: [B, A, 1].
    """
    if centralised and spec.state_dim > 0:
        mlp = agent_mlp(spec.state_dim, 1, spec.n_agents, cells, share_params, activation)
        return TensorDictModule(
            _StatePerAgent(mlp, spec.n_agents), in_keys=[keys.STATE], out_keys=[keys.STATE_VALUE]
        )
    mlp = agent_mlp(spec.observation_dim, 1, spec.n_agents, cells, share_params, activation, centralised)
    return TensorDictModule(mlp, in_keys=[keys.OBSERVATION], out_keys=[keys.STATE_VALUE])
