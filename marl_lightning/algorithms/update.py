"""The pieces of an on-policy update: phases (what is minimised, over which parameters) and their record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase

from marl_lightning.core import keys
from marl_lightning.objectives import PARAM_KEYS, agent_mask, standardise_per_agent

LOSS_PREFIX = "loss_"
_TRAIN_KEYS = (keys.OBSERVATION, keys.ACTION, keys.ACTION_LOG_PROB, keys.ADVANTAGE, keys.VALUE_TARGET)


def flatten_for_update(batch: TensorDictBase, with_state: bool, normalise_advantage: bool) -> TensorDictBase:
    """The keys the update reads (observations, actions and their log-probs, advantages, value targets, the
    collecting policy's parameters, the agent mask and the global state where present), flattened over
    envs and time; advantages standardised per agent when ``normalise_advantage``.

    Shapes: batch [B, T] -> [B·T] (agent tensors [B·T, A, ...]).
    """
    extra = [keys.STATE] if with_state else []
    if agent_mask(batch) is not None:
        extra.append(keys.MASK)
    present = batch.keys(True)
    extra += [key for key in PARAM_KEYS if key in present]  # the collecting policy's parameters
    flat = batch.select(*_TRAIN_KEYS, *extra).reshape(-1)
    if normalise_advantage:
        flat.set(keys.ADVANTAGE, standardise_per_agent(flat.get(keys.ADVANTAGE), mask=agent_mask(flat)))
    return flat


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


_LOSS_ORDER = ("loss_objective", "loss_critic", "loss_entropy")


def total_loss(out: TensorDictBase) -> torch.Tensor:
    """The sum of an objective's ``loss_*`` terms (policy, value, entropy, then any other)."""
    present = out.keys()
    terms = [key for key in _LOSS_ORDER if key in present]
    terms += [key for key in present if key.startswith(LOSS_PREFIX) and key not in _LOSS_ORDER]
    return sum(out.get(key) for key in terms)


class UpdateRecord:
    """The loss diagnostics of every minibatch of an iteration, kept once.

    Scalars (the ``loss_*`` terms, a phase's β) are averaged over the minibatches that report them;
    per-agent diagnostics [A] (``approx_kl``, ``clip_fraction``) over the minibatches of the phases that
    update that agent; ``ratio_min``/``ratio_max`` [A] become the range per optimisation epoch [K, A].
    Adding a minibatch only keeps references; the reductions run once, in :meth:`statistics`.
    """

    def __init__(self, num_epochs: int, n_agents: int, device: torch.device) -> None:
        self.num_epochs, self.n_agents, self.device = num_epochs, n_agents, device
        self.values: dict[str, list[torch.Tensor]] = {}
        self.origins: dict[str, list[tuple[int, int | None]]] = {}  # (epoch, updated agent or None: all)

    def add(self, out: TensorDictBase, epoch: int, agent: int | None) -> None:
        """Record one minibatch's objective output."""
        for key, value in out.items():
            self.values.setdefault(key, []).append(value.detach())
            self.origins.setdefault(key, []).append((epoch, agent))

    def _weights(self, key: str) -> torch.Tensor:
        """1 where a value belongs to an agent its phase updated. Shapes: -> [minibatches, A]."""
        agents = torch.tensor([-1 if agent is None else agent for _, agent in self.origins[key]],
                              device=self.device)  # [minibatches], -1: all agents
        one_agent = torch.nn.functional.one_hot(agents.clamp_min(0), self.n_agents).float()
        return torch.where(agents.unsqueeze(-1) < 0, 1.0, one_agent)

    def statistics(self) -> dict[str, torch.Tensor]:
        """Means over minibatches, and the per-epoch ratio range. Shapes: scalars, [A], ratio range [K, A]."""
        out = {}
        for key, values in self.values.items():
            stacked = torch.stack(values)  # [minibatches, ...]
            if stacked.dim() == 1:
                out[key] = stacked.mean(0)
                continue
            weights = self._weights(key)  # [minibatches, A]
            if key in ("ratio_min", "ratio_max"):
                epochs = torch.tensor([epoch for epoch, _ in self.origins[key]], device=self.device)
                fill = torch.inf if key == "ratio_min" else -torch.inf
                kept = torch.where(weights > 0, stacked, fill)
                reduce = torch.amin if key == "ratio_min" else torch.amax
                per_epoch = [reduce(kept[epochs == k], 0) for k in range(self.num_epochs)]
                out[key] = torch.stack(per_epoch)  # [K, A]
            else:
                out[key] = (stacked * weights).sum(0) / weights.sum(0).clamp_min(1)
        return out
