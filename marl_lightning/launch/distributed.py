"""Multi-process training for on-policy RL: each rank collects its own data and runs the whole update.

Lightning's ``DDPStrategy`` wraps the module in ``DistributedDataParallel``, whose gradient reduction is
armed once per forward. An on-policy update runs ``num_epochs × minibatches`` backward passes inside one
``training_step``, so that wrapper would synchronise at most one of them. ``RolloutDDPStrategy`` keeps the
process group, launcher and rank-0 checkpointing of DDP but leaves the module unwrapped: parameters are
broadcast from rank 0 once, and the module all-reduces its gradients after every backward pass.
``--trainer.strategy ddp`` is mapped to it by the CLI; its registry name is ``rollout_ddp``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from typing_extensions import override


def world_size() -> int:
    """Processes in the default group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_gradients(parameters: Sequence[torch.Tensor]) -> None:
    """Average gradients over ranks with one collective on a flattened buffer."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if world_size() == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def reduce(tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
    """``mean``, ``sum``, ``min`` or ``max`` of a tensor over ranks (the tensor itself without a group)."""
    if world_size() == 1:
        return tensor
    out = tensor.detach().clone()
    dist_op = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
               "max": dist.ReduceOp.MAX}[op]
    dist.all_reduce(out, op=dist_op)
    return out / world_size() if op == "mean" else out


def parameter_checksum(module: torch.nn.Module) -> torch.Tensor:
    """The sum of every parameter and buffer of ``module`` in float64: the ranks of a rollout DDP fit hold
    the same value while they hold the same parameters and buffers. Shapes: -> scalar."""
    return torch.stack([t.detach().double().sum() for t in (*module.parameters(), *module.buffers())]).sum()


def broadcast_from_rank_zero(tensors: Iterable[torch.Tensor]) -> None:
    """Make every rank start from rank 0's values."""
    if world_size() == 1:
        return
    for tensor in tensors:
        dist.broadcast(tensor.data, src=0)


class RolloutDDPStrategy(DDPStrategy):
    """DDP without the ``DistributedDataParallel`` wrapper (see the module docstring)."""

    strategy_name = "rollout_ddp"

    @override
    def configure_ddp(self) -> None:
        module = self.model
        broadcast_from_rank_zero([*module.parameters(), *module.buffers()])

    @classmethod
    @override
    def register_strategies(cls, strategy_registry: StrategyRegistry) -> None:  # type: ignore[override]
        strategy_registry.register(
            cls.strategy_name, cls, description="DDP for on-policy RL (gradients all-reduced per backward)"
        )


if RolloutDDPStrategy.strategy_name not in StrategyRegistry:
    RolloutDDPStrategy.register_strategies(StrategyRegistry)
