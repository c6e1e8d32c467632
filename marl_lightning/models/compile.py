"""``torch.compile`` of the networks: an option, off by default (``model.compile_networks``).

Every ``MultiAgentMLP`` of a module (actor, critic, PERLA's context layer, ...) is compiled in place with
``nn.Module.compile``, which keeps the state dict's keys: a checkpoint of a compiled run loads into an eager
one and back. An adapter: :func:`_compiled_part` says which part of TorchRL's network is compiled, and
dynamo's cache is made larger (``torch._dynamo.config``); nothing else here touches a dependency's insides.

Each new input shape (a collection step, a minibatch, the whole iteration for advantages and
statistics) compiles once more, so it pays only where a fit runs long enough to win its compile time back.
On the CPU measured it does not pay at the default scale (``docs/performance.md``: a 60k-frame fit 19 s
eager, 25 s compiled, the update itself 15 % slower); on a GPU, where a minibatch step is bound by kernel
launches, it may, and ``benchmarks/gpu_check.sh`` measures it there.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn
from torchrl.modules import MultiAgentMLP

from marl_lightning.core.errors import ConfigError

# torch.compile's other modes (``reduce-overhead``: CUDA graphs; ``max-autotune``) are left out until run on
# a GPU: CUDA graphs overwrite their outputs at the next replay, and a collector keeps the policy's outputs.
CompileMode = Literal["off", "default"]
RECOMPILE_LIMIT = 64


def check_compile_mode(mode: str) -> None:
    """Refuse a mode this option does not offer, naming the ones it does."""
    if mode not in get_args(CompileMode):
        choices = ", ".join(get_args(CompileMode))
        raise ConfigError(f"model.compile_networks must be one of {choices}, got {mode!r}.")


def compile_networks(module: nn.Module, mode: CompileMode) -> int:
    """Compile every ``MultiAgentMLP`` inside ``module`` in place with ``torch.compile`` (its default mode;
    nothing for ``"off"``); returns how many were compiled."""
    check_compile_mode(mode)
    if mode == "off":
        return 0
    networks = [m for m in module.modules() if isinstance(m, MultiAgentMLP)]
    # Every network's layers run TorchRL's one MLP.forward, whose compiled graphs share dynamo's cache of
    # 8 per code object: actor and critic, with and without a gradient, per input shape fill it (PERLA's in
    # a few steps), and what does not fit would run eagerly.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for network in networks:
        # Per-agent networks (vmap) get one graph per input shape (a fit has a handful): symbolic sizes
        # fail under vmap. Shared ones turn a size dynamic once it changes (PERLA's samples make many).
        dynamic = None if network.share_params else False
        _compiled_part(network).compile(dynamic=dynamic)
    return len(networks)


def _compiled_part(network: MultiAgentMLP) -> nn.Module:
    """The part of a ``MultiAgentMLP`` to compile: the whole network for per-agent parameters (its ``vmap``
    of a functional call compiles as it is); for shared ones, TorchRL's private ``_empty_net``, the
    parameterless template it calls with the parameters swapped in. Compiled whole, a shared network's
    swap (``TensorDict.to_module``) is traced, and what dynamo replays afterwards leaves the template with
    parameters on the meta device (TorchRL 0.14.1, torch 2.13): extra keys in the state dict, and
    ``.cpu()`` at Lightning's teardown fails. This is the one place that reads the private attribute.
    """
    return network if not network.share_params else network._empty_net
