"""The pieces of an on-policy update: phases (what is minimised, over which parameters) and their record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase

LOSS_PREFIX = "loss_"


@dataclass
class UpdatePhase:
    """``num_epochs`` passes of shuffled minibatches that minimise one objective.

    Attributes:
        objective: minibatch [b] -> TensorDict of ``loss_*`` scalars (summed into the loss) and detached
            per-agent diagnostics [A] (a TorchRL ``LossModule`` call).
        parameters: what the gradient step clips and all-reduces.
        optimizer: whose gradients are zeroed before each backward pass.
        step: the optimiser step (``optimizer.step`` when None).
        agent: the one agent whose policy this phase updates (its diagnostics alone are recorded), or None
            for all agents at once.
    """

    objective: Callable[[TensorDictBase], TensorDictBase]
    parameters: list[torch.Tensor]
    optimizer: torch.optim.Optimizer
    step: Callable[[], object] | None = None
    agent: int | None = None


_LOSS_ORDER = {"loss_objective": 0, "loss_critic": 1, "loss_entropy": 2}


def total_loss(out: TensorDictBase) -> torch.Tensor:
    """The sum of an objective's ``loss_*`` terms (policy, value, entropy, then any other)."""
    terms = [key for key in out.keys() if key.startswith(LOSS_PREFIX)]
    terms.sort(key=lambda key: _LOSS_ORDER.get(key, len(_LOSS_ORDER)))
    return sum(out.get(key) for key in terms)


class UpdateRecord:
    """The loss diagnostics of every minibatch of an iteration, kept once.

    Scalars (the ``loss_*`` terms, a phase's β) are averaged over the minibatches that report them;
    per-agent diagnostics [A] (``approx_kl``, ``clip_fraction``) over the minibatches of the phases that
    update that agent; ``ratio_min``/``ratio_max`` [A] become the range per optimisation epoch [K, A].
    """

    def __init__(self, num_epochs: int, n_agents: int, device: torch.device) -> None:
        self.n_agents = n_agents
        self.ratio_min = torch.full((num_epochs, n_agents), torch.inf, device=device)
        self.ratio_max = torch.full((num_epochs, n_agents), -torch.inf, device=device)
        self.values: dict[str, list[torch.Tensor]] = {}
        self.weights: dict[str, list[torch.Tensor]] = {}

    def add(self, out: TensorDictBase, epoch: int, agent: int | None) -> None:
        """Record one minibatch's objective output."""
        active = torch.ones(self.n_agents, dtype=torch.bool, device=self.ratio_min.device)  # [A]
        if agent is not None:
            active = torch.zeros_like(active)
            active[agent] = True
        for key, value in out.items():
            value = value.detach()
            if key == "ratio_min":
                value = torch.where(active, value, torch.inf)
                self.ratio_min[epoch] = torch.minimum(self.ratio_min[epoch], value)
            elif key == "ratio_max":
                value = torch.where(active, value, -torch.inf)
                self.ratio_max[epoch] = torch.maximum(self.ratio_max[epoch], value)
            else:
                self.values.setdefault(key, []).append(value)
                if value.dim():  # per agent [A]
                    self.weights.setdefault(key, []).append(active.to(value.dtype))

    def statistics(self) -> dict[str, torch.Tensor]:
        """Means over minibatches, and the per-epoch ratio range. Shapes: scalars, [A], ratio range [K, A]."""
        out = {"ratio_min": self.ratio_min, "ratio_max": self.ratio_max}
        for key, values in self.values.items():
            stacked = torch.stack(values)  # [minibatches, ...]
            if stacked.dim() == 1:
                out[key] = stacked.mean(0)
            else:
                weights = torch.stack(self.weights[key])  # [minibatches, A]
                out[key] = (stacked * weights).sum(0) / weights.sum(0).clamp_min(1)
        return out
