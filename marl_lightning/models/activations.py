"""The hidden layers' nonlinearities: tanh computed through the sigmoid kernel on the CPU.

PyTorch's float32 ``tanh`` kernel runs far slower on the CPU than its ``sigmoid`` (on this project's
2-core machine 0.55 ms against 0.09 ms for one [1200, 256] hidden layer; ``docs/performance.md``): at
the anchor settings tanh took 17 % of a minibatch step. tanh(x) = 2σ(2x) − 1 is the same function, so
:class:`Tanh` computes it that way, with tanh's own backward g·(1 − y²) from the output. The result
differs from ``torch.tanh`` by rounding only (at most about 2e-7 absolutely: 2σ − 1 cancels near 0, so
the error there is absolute, not relative). On CUDA ``torch.tanh`` is one fast kernel and is used as is.
"""

from __future__ import annotations

import torch
from torch import nn
from typing_extensions import override


class _TanhThroughSigmoid(torch.autograd.Function):
    """y = 2σ(2x) − 1, backward g·(1 − y²) (``tanh_backward``); a vmap rule is generated (per-agent MLPs)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: torch.Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh, through the sigmoid kernel off CUDA. Shapes: any -> the same.

    Without a gradient to record (collection, evaluation, advantages) the three kernels run in place, with
    no autograd Function: its ``apply`` costs about 0.1 ms a call, more than the kernels at a policy step.
    """
    if x.is_cuda:
        return torch.tanh(x)
    if torch.is_grad_enabled():  # not x.requires_grad: under vmap (per-agent MLPs) it reads False
        return _TanhThroughSigmoid.apply(x)
    return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)


class Tanh(nn.Tanh):
    """``nn.Tanh`` (a subclass: same name, no parameters, checkpoints unchanged) computed by :func:`tanh`."""

    @override
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return tanh(input)
