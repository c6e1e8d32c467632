"""The one network shape every actor and critic here uses."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torchrl.modules import MultiAgentMLP


def agent_mlp(
    n_inputs: int,
    n_outputs: int,
    n_agents: int,
    cells: Sequence[int],
    share_params: bool,
    activation: type[nn.Module],
    centralised: bool = False,
    bias: bool = True,
) -> MultiAgentMLP:
    """An MLP per agent (or one shared by all), all agents in one batched call (TorchRL ``MultiAgentMLP``).

    ``centralised``: every agent's network sees all agents' inputs. ``bias``: whether the last layer has one.

    Shapes: [*, A, n_inputs] -> [*, A, n_outputs].
    """
    return MultiAgentMLP(
        n_agent_inputs=n_inputs,
        n_agent_outputs=n_outputs,
        n_agents=n_agents,
        centralized=centralised,
        share_params=share_params,
        depth=len(cells),
        num_cells=list(cells),
        activation_class=activation,
        bias_last_layer=bias,
    )
