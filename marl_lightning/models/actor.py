"""Policies: a categorical for discrete actions, a squashed (tanh) Gaussian for continuous ones."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.modules import ProbabilisticActor, TanhNormal

from marl_lightning.core import keys
from marl_lightning.envs.base import EnvSpec
from marl_lightning.models.activations import Tanh
from marl_lightning.models.mlp import agent_mlp


def build_actor(
    spec: EnvSpec,
    cells: Sequence[int],
    share_params: bool,
    activation: type[nn.Module] = Tanh,
) -> ProbabilisticActor:
    """A decentralised policy π_i(a_i | o_i) for every agent, one batched network call for all agents.

    Reads ``("agents", "observation")`` and writes ``("agents", "action")`` and
    ``("agents", "action_log_prob")``, plus the distribution's parameters (``loc``/``scale`` or ``logits``).

    Shapes:
        observation: [B, A, F]; action: [B, A, action_dim] (continuous) or [B, A] (discrete);
        action_log_prob: [B, A].
    """
    n_out = 2 * spec.action_dim if spec.continuous else spec.action_dim
    mlp = agent_mlp(spec.observation_dim, n_out, spec.n_agents, cells, share_params, activation)
    if spec.continuous:
        net = nn.Sequential(mlp, NormalParamExtractor(scale_mapping="biased_softplus_1.0"))
        module = TensorDictModule(net, in_keys=[keys.OBSERVATION], out_keys=[keys.LOC, keys.SCALE])
        return ProbabilisticActor(
            module,
            in_keys=[keys.LOC, keys.SCALE],
            out_keys=[keys.ACTION],
            distribution_class=TanhNormal,
            distribution_kwargs={"low": spec.action_low, "high": spec.action_high},
            return_log_prob=True,
        )
    module = TensorDictModule(mlp, in_keys=[keys.OBSERVATION], out_keys=[keys.LOGITS])
    return ProbabilisticActor(
        module,
        in_keys=[keys.LOGITS],
        out_keys=[keys.ACTION],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
    )
