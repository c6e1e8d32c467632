"""The hidden layers' nonlinearities: tanh through the sigmoid kernel, on CPUs where that is faster.

On some CPUs PyTorch's float32 ``tanh`` kernel runs far slower than its ``sigmoid``: on the 2-core machine
of stops 19–21, 0.55 ms against 0.09 ms for one [1200, 256] hidden layer, and tanh took 17 % of a
minibatch step (``docs/performance.md``). tanh(x) = 2σ(2x) − 1 is the same function, so :class:`Tanh` can
compute it that way, with tanh's own backward g·(1 − y²) from the output. The result differs from
``torch.tanh`` by rounding only (at most about 2e-7 absolutely: 2σ − 1 cancels near 0, so the error there
is absolute, not relative). On other CPUs ``tanh`` is the faster kernel (this project's machine of
2026-12-03: 0.039 ms against 0.051 ms for ``sigmoid``, and the three kernels of the sigmoid form cost twice
tanh's time), so the way is chosen per process, once, by :func:`sigmoid_form_pays`. On CUDA
``torch.tanh`` is one fast kernel and is used as is.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from typing import Literal

import torch
from torch import nn
from typing_extensions import override


class _TanhThroughSigmoid(torch.autograd.Function):
    """y = 2σ(2x) − 1, backward g·(1 − y²) (``tanh_backward``); a vmap rule is generated (per-agent MLPs)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return _sigmoid_form(x)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: torch.Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


KERNEL_ENV = "MARL_LIGHTNING_TANH"  # "sigmoid" or "tanh" fixes the CPU kernel; unset: measured
MARGIN = 2.0  # the sigmoid form is used only where it is this many times faster than tanh


@functools.cache
def sigmoid_form_pays() -> bool:
    """Whether this CPU computes tanh faster as 2σ(2x) − 1 than with ``torch.tanh``: both timed once per
    process on a [1024, 256] float32 tensor without a gradient (9 interleaved rounds of 10 calls, medians,
    about 5 ms in all); the sigmoid form only if it is :data:`MARGIN` times faster. The margin keeps the
    choice, and so the arithmetic, the same in every process on one machine (the two measured so far sit at
    6× and 0.4×). ``MARL_LIGHTNING_TANH=sigmoid`` or ``=tanh`` decides instead. The measured choice is
    exported there, so the processes this one starts (the ranks of a DDP fit, a grid's runs) compute with
    the same kernel.
    """
    forced = os.environ.get(KERNEL_ENV)
    if forced in ("sigmoid", "tanh"):
        return forced == "sigmoid"
    x = torch.randn(1024, 256)
    times: dict[str, list[float]] = {"tanh": [], "sigmoid": []}
    with torch.no_grad():
        for _ in range(9):
            for name, kernel in (("tanh", torch.tanh), ("sigmoid", _sigmoid_form)):
                start = time.perf_counter()
                for _ in range(10):
                    kernel(x)
                times[name].append(time.perf_counter() - start)
    pays = statistics.median(times["sigmoid"]) * MARGIN < statistics.median(times["tanh"])
    os.environ[KERNEL_ENV] = "sigmoid" if pays else "tanh"
    return pays


def _sigmoid_form(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh: through the sigmoid kernel on a CPU where that pays (:func:`sigmoid_form_pays`), else
    ``torch.tanh``. Shapes: any -> the same.

    Under ``torch.compile`` it is ``torch.tanh``: the compiler fuses it into its neighbours (and cannot
    compile the autograd Function under ``vmap``, per-agent MLPs).

    Without a gradient to record (collection, evaluation, advantages) the three kernels run in place, with
    no autograd Function: its ``apply`` costs about 0.1 ms a call, more than the kernels at a policy step.
    """
    if x.is_cuda or torch.compiler.is_compiling() or not sigmoid_form_pays():
        return torch.tanh(x)
    if torch.is_grad_enabled():  # not x.requires_grad: under vmap (per-agent MLPs) it reads False
        return _TanhThroughSigmoid.apply(x)
    return _sigmoid_form(x)


class Tanh(nn.Tanh):
    """``nn.Tanh`` (a subclass: same name, no parameters, checkpoints unchanged) computed by :func:`tanh`."""

    @override
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return tanh(input)


Activation = Literal["tanh", "relu"]
# The hidden layers' nonlinearity by its config name (``--model.init_args.activation``).
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": Tanh, "relu": nn.ReLU}
