"""Non-finite values (NaN, Inf): found where they enter an iteration, named, then stopped on or skipped.

Two checks per iteration, each one host synchronisation:

- the env's data, once it is collected (:func:`nonfinite_data`): observations (flagged step by step by
  ``envs.finite.FlagNonFiniteObservation``, which zeroes them so that the policy can still act), rewards
  and the global state;
- the update (:class:`UpdateGuard`): every minibatch's ``loss_*`` terms and gradient norm.

``NonFiniteGuard`` decides what follows. ``"stop"`` (the default) raises
:class:`~marl_lightning.core.errors.NonFiniteError` with one paragraph naming the iteration, the key or loss
term and the agents; the iteration's state is never checkpointed, so the last good checkpoint is kept.
``"skip"`` drops a poisoned iteration (no update; the next one starts from freshly reset envs) or a
poisoned minibatch (no optimiser step; this checks before every step, one host sync a minibatch),
counts them (``health/skipped_iterations``, ``health/skipped_minibatches``) and stops once
``max_skips_in_a_row`` iterations or minibatches in a row were skipped.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from tensordict import TensorDictBase

from marl_lightning.core import keys
from marl_lightning.core.errors import NonFiniteError
from marl_lightning.launch.distributed import reduce, world_size

OnNonFinite = Literal["stop", "skip"]

# Where the env's data is read (key in the batch [B, T] -> what the message calls it).
_DATA = {
    keys.OBSERVATION_NONFINITE: "observation ('agents', 'observation')",
    keys.nxt(keys.OBSERVATION_NONFINITE): "next observation ('next', 'agents', 'observation')",
    keys.nxt(keys.REWARD): "reward ('next', 'agents', 'reward')",
    keys.STATE: "global state ('state')",
    keys.nxt(keys.STATE): "next global state ('next', 'state')",
}
# Per-agent diagnostics [A] of a loss's output: a non-finite entry names the agent.
_PER_AGENT = ("approx_kl", "clip_fraction", "kl_penalty", "sqrt_kl_penalty")


def _agents(mask: torch.Tensor) -> str:
    """``mask`` [A] -> "agent 1" / "agents 0, 2"."""
    indices = [str(i) for i in mask.nonzero().flatten().tolist()]
    return f"agent{'s' if len(indices) > 1 else ''} {', '.join(indices)}"


def nonfinite_data(batch: TensorDictBase) -> str | None:
    """What is non-finite in a collected batch: each key, its agents and the first (env, step); None when
    everything is finite. One host synchronisation.

    Shapes:
        batch [B, T]; observation flags and rewards [B, T, A(, 1)]; the state [B, T, S] (no agent).
    """
    present = batch.keys(True)
    masks: dict[str, torch.Tensor] = {}  # [B, T, A] or [B, T, 1]
    for key, name in _DATA.items():
        if key not in present:
            continue
        value = batch.get(key)
        if value.dtype == torch.bool:
            masks[name] = value
        else:
            bad = ~torch.isfinite(value)
            per_agent = key == keys.nxt(keys.REWARD)  # [B, T, A, 1]
            masks[name] = bad.flatten(3).any(-1) if per_agent else bad.flatten(2).any(-1, keepdim=True)
    if not masks:
        return None
    anywhere = torch.stack([mask.any() for mask in masks.values()]).tolist()
    if not any(anywhere):
        return None
    parts = []
    for (name, mask), bad in zip(masks.items(), anywhere, strict=True):
        if not bad:
            continue
        env, step = mask.any(-1).nonzero()[0].tolist()  # first in env order, then in time
        who = _agents(mask.flatten(0, 1).any(0)) if "state" not in name else "every agent's critic"
        parts.append(f"the {name} is NaN or Inf for {who} (first at env {env}, step {step} of the iteration)")
    return "; ".join(parts)


class UpdateGuard:
    """One iteration's minibatches: their loss terms and gradient norms, checked for NaN and Inf.

    In ``stop`` mode :meth:`permits_step` keeps references only and :meth:`check` looks at them all at the
    iteration's end (one host sync); a poisoned step has then been taken, but the state it produced is
    never checkpointed. In ``skip`` mode :meth:`permits_step` looks before each optimiser step.
    """

    def __init__(self, skip: bool, in_a_row: int = 0, max_in_a_row: int = 5, iteration: int = 0) -> None:
        self.skip = skip
        self.minibatches: list[tuple[int, int | None, TensorDictBase, torch.Tensor]] = []
        self.losses: list[torch.Tensor] = []  # each minibatch's summed loss
        self.skipped = 0
        self.in_a_row, self.max_in_a_row, self.iteration = in_a_row, max_in_a_row, iteration

    def permits_step(
        self, out: TensorDictBase, loss: torch.Tensor, epoch: int, agent: int | None, norm: torch.Tensor
    ) -> bool:
        """Whether the optimiser may step on this minibatch (always, except in ``skip`` mode when its
        loss or gradient norm is NaN or Inf on any rank)."""
        self.minibatches.append((epoch, agent, out, norm))
        self.losses.append(loss.detach())
        if not self.skip:
            return True
        finite = (torch.isfinite(loss) & torch.isfinite(norm)).float()
        if world_size() > 1:  # every rank skips together (their gradients are all-reduced)
            finite = reduce(finite, "min")
        if bool(finite):
            self.in_a_row = 0
            return True
        self.skipped += 1
        self.in_a_row += 1
        if self.in_a_row >= self.max_in_a_row:
            raise NonFiniteError(
                f"Non-finite values at iteration {self.iteration}: {self.in_a_row} minibatches in a row "
                f"skipped (model.max_skips_in_a_row {self.max_in_a_row}); the last: "
                f"{self.describe(len(self.minibatches) - 1)}. {_ADVICE}"
            )
        return False

    def first_problem(self) -> str | None:
        """The first minibatch whose loss or gradient norm is NaN or Inf, described; None if none.

        Two stacks and one host sync for the whole iteration (a NaN or Inf term makes the summed loss so).
        """
        if not self.minibatches:
            return None
        norms = torch.stack([norm for _, _, _, norm in self.minibatches])  # [minibatches]
        finite = torch.isfinite(torch.stack(self.losses)) & torch.isfinite(norms)
        if bool(finite.all()):
            return None
        return self.describe(int((~finite).nonzero()[0]))

    def describe(self, index: int) -> str:
        """Minibatch ``index``: which loss terms are non-finite, for which agents, or the gradient norm."""
        epoch, agent, out, norm = self.minibatches[index]
        terms = [key for key in out.keys() if key.startswith("loss_") and not bool(torch.isfinite(out[key]))]
        bad_agents = torch.zeros((), dtype=torch.bool)
        for key in _PER_AGENT:
            if key in out.keys():
                bad_agents = bad_agents | ~torch.isfinite(out[key])
        if agent is not None:
            who = f"agent {agent} (its update phase)"
        elif bad_agents.dim() == 1 and bool(bad_agents.any()):
            who = _agents(bad_agents)
        else:
            who = "the agents together (no per-agent diagnostic is non-finite)"
        what = f"loss term{'s' if len(terms) > 1 else ''} {', '.join(terms)}" if terms else "the gradient"
        return (f"{what} is NaN or Inf at epoch {epoch}, minibatch {index} of the update, for {who} "
                f"(gradient norm {float(norm):.4g})")


class NonFiniteGuard:
    """What an algorithm does about NaN and Inf (owned by the module; its counters are checkpointed).

    Args:
        on_nonfinite: ``stop`` raises ``NonFiniteError``; ``skip`` drops the poisoned iteration or
            minibatch and counts it.
        max_skips_in_a_row: with ``skip``, stop once this many iterations, or minibatches, in a row were
            skipped.
    """

    def __init__(self, on_nonfinite: OnNonFinite = "stop", max_skips_in_a_row: int = 5) -> None:
        self.skip = on_nonfinite == "skip"
        self.max_skips_in_a_row = max_skips_in_a_row
        self.in_a_row = {"iterations": 0, "minibatches": 0}

    def update_guard(self, iteration: int) -> UpdateGuard:
        """The guard of one iteration's update (it carries on the count of minibatches skipped in a row)."""
        return UpdateGuard(self.skip, self.in_a_row["minibatches"], self.max_skips_in_a_row, iteration)

    def on_data(self, problem: str | None, iteration: int) -> bool:
        """Whether the iteration's data may be trained on (all ranks agree); raises in ``stop`` mode."""
        bad = torch.tensor(float(problem is not None))
        if world_size() > 1:
            bad = reduce(bad, "max")
        if not bool(bad):
            self.in_a_row["iterations"] = 0
            return True
        problem = problem or "another rank's data is NaN or Inf"
        if not self.skip:
            raise NonFiniteError(
                f"Non-finite values from the env at iteration {iteration}: {problem}. The run is stopped "
                f"before any update on them. {_ADVICE}"
            )
        self.in_a_row["iterations"] += 1
        if self.in_a_row["iterations"] >= self.max_skips_in_a_row:
            raise NonFiniteError(
                f"{self.in_a_row['iterations']} iterations in a row skipped for NaN or Inf from the env "
                f"(model.max_skips_in_a_row {self.max_skips_in_a_row}); the last, iteration {iteration}: "
                f"{problem}. {_ADVICE}"
            )
        return False

    def after_update(self, guard: UpdateGuard, iteration: int) -> None:
        """Raise for a poisoned update (``stop``); carry on the count of minibatches skipped in a row."""
        if not self.skip:
            problem = guard.first_problem()
            if problem is not None:
                raise NonFiniteError(
                    f"Non-finite values at iteration {iteration}: {problem}. The run is stopped, nothing of "
                    f"this iteration is kept. {_ADVICE}"
                )
            return
        self.in_a_row["minibatches"] = guard.in_a_row

    def state_dict(self) -> dict[str, Any]:
        return dict(self.in_a_row)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.in_a_row.update(state)


def skip_counts(iterations: int, minibatches: int) -> dict[str, torch.Tensor]:
    """The ``skipped_iterations`` and ``skipped_minibatches`` statistics of one iteration (``skip`` mode)."""
    return {"skipped_iterations": torch.tensor(float(iterations)),
            "skipped_minibatches": torch.tensor(float(minibatches))}


_ADVICE = (
    "Find where the named values come from (the env, a reward or loss hook); to drop poisoned iterations "
    "and minibatches instead, pass --model.init_args.on_nonfinite skip."
)
