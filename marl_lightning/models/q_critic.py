"""Joint-action critics Q_i(s, a_i, a_−i) for every agent in one batched call (PERLA, paper 000)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from torch import nn

from marl_lightning.core import keys
from marl_lightning.envs.base import EnvSpec
from marl_lightning.models.activations import Tanh
from marl_lightning.models.mlp import agent_mlp


class JointActionQCritic(nn.Module):
    """Q_i(c_i, a_i, a_−i) for all agents i at once (``MultiAgentMLP``, no loop over agents).

    The context c_i is the env's global state (centralised, when the env has one), all agents'
    observations (centralised, otherwise) or agent i's own observation (decentralised). Agent i's input
    lists its own action first, then the others' in agent order; a network shared by all agents
    (``share_params``) also gets the one-hot index of agent i, so that it knows whose action comes first.
    Actions enter encoded: one-hot for discrete actions, as they are for continuous ones.

    The first layer is split: W [c; x] + b = (W_c c + b) + W_x x, with x the joint action (and index).
    PERLA asks Q for K joint actions at the same context, so the context part, most of the first layer's
    inputs, is computed once per state and added to each sample's action part, not computed K times. Both
    parts start from the distribution of one ``nn.Linear`` over the whole input (uniform in
    ±1/sqrt(fan-in of [c; x])), so the network is the same function class and initial law as one MLP.

    Shapes:
        context: [*, A, C]; own, others: [*, A, e] (encoded actions, slot j = agent j) -> [*, A, 1].
    """

    def __init__(
        self,
        spec: EnvSpec,
        cells: Sequence[int],
        share_params: bool,
        centralised: bool,
        activation: type[nn.Module] = Tanh,
    ) -> None:
        super().__init__()
        n = spec.n_agents
        self.n_agents = n
        self.continuous = spec.continuous
        self.action_dim = spec.action_dim
        self.uses_state = centralised and spec.state_dim > 0
        self.centralised = centralised
        observed = spec.observation_dim * (n if centralised else 1)
        context_dim = spec.state_dim if self.uses_state else observed
        # A network shared by all agents is told whose Q it computes: without the index, an own-action-first
        # input does not say whose action comes first (nor which part of a global context is that agent's).
        self.identify = share_params
        action_inputs = n * spec.action_dim + (n if share_params else 0)
        self.n_inputs = context_dim + action_inputs
        first, rest = (cells[0], list(cells[1:])) if cells else (1, None)
        self.context_layer = agent_mlp(context_dim, first, n, [], share_params, activation)
        self.action_layer = agent_mlp(action_inputs, first, n, [], share_params, activation, bias=False)
        bound = 1.0 / math.sqrt(self.n_inputs)
        with torch.no_grad():
            for parameter in (*self.context_layer.parameters(), *self.action_layer.parameters()):
                parameter.uniform_(-bound, bound)
        self.activation: nn.Module = nn.Identity()
        self.rest: nn.Module = nn.Identity()  # no hidden layer: the first layer is the output
        if rest is not None:
            self.activation = activation()
            self.rest = agent_mlp(first, 1, n, rest, share_params, activation)
        order = [[i] + [j for j in range(n) if j != i] for i in range(n)]
        self.register_buffer("slot_order", torch.tensor(order), persistent=False)  # [A, A]
        self.register_buffer("own_slot", torch.eye(n, dtype=torch.bool), persistent=False)  # [A, A]

    def context(self, td: TensorDictBase) -> torch.Tensor:
        """c_i for every agent. Shapes: td [*] -> [*, A, C]."""
        if self.uses_state:
            state = td.get(keys.STATE)  # [*, S]
            return state.unsqueeze(-2).expand(*state.shape[:-1], self.n_agents, state.shape[-1])
        observation = td.get(keys.OBSERVATION)  # [*, A, F]
        if not self.centralised:
            return observation
        flat = observation.flatten(-2)  # [*, A·F]
        return flat.unsqueeze(-2).expand(*flat.shape[:-1], self.n_agents, flat.shape[-1])

    def encode(self, action: torch.Tensor) -> torch.Tensor:
        """Actions as critic inputs. Shapes: [*, A] (discrete) or [*, A, d] -> [*, A, e]."""
        if self.continuous:
            return action
        return nn.functional.one_hot(action.long(), self.action_dim).to(torch.get_default_dtype())

    def arrange(self, own: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        """Agent i's joint-action input: own[i] first, then others[j] for j ≠ i in order.

        Shapes: own, others [*, A, e] (broadcastable) -> [*, A, A·e].
        """
        # [*, A (whose input), A (slot), e]: slot j holds own[j] in agent j's input, others[j] elsewhere
        full = torch.where(self.own_slot.unsqueeze(-1), own.unsqueeze(-3), others.unsqueeze(-3))
        index = self.slot_order.unsqueeze(-1).expand(*full.shape)
        return torch.gather(full, -2, index).flatten(-2)

    def forward(self, context: torch.Tensor, own: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        """Q_i(c_i, own_i, others_−i).

        Shapes: context [*, A, C]; own/others [*, A, e] or with leading sample dims [K, *, A, e], over
        which the context broadcasts (its part of the first layer is computed once) -> [K, *, A, 1].
        """
        own, others = torch.broadcast_tensors(own, others)
        joint = self.arrange(own, others)  # [K, *, A, A·e]
        if self.identify:  # one-hot i
            index = self.own_slot.to(joint.dtype).expand(*joint.shape[:-1], self.n_agents)
            joint = torch.cat([joint, index], -1)
        hidden = self.context_layer(context) + self.action_layer(joint)  # [*, A, H] + [K, *, A, H]
        return self.rest(self.activation(hidden))
