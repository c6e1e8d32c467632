"""Per-iteration statistics, each declared once with its metric name and its reduction over ranks.

An algorithm's iteration returns a dict of named tensors (its *statistics*); the module's ``statistics``
table declares, for every name, how it is reduced over ranks and under which metric name it is logged.
A statistic that is not declared is an error, so every metric name has exactly one owner: the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from marl_lightning.launch.distributed import reduce

RankReduction = Literal["mean", "sum", "min", "max", "spread", "ratio"]


@dataclass(frozen=True)
class Statistic:
    """How one statistic is reduced over ranks and logged.

    Args:
        metric: the metric name. A ``{}`` in it is replaced by the index along the value's first dimension
            (``tr/kl/agent_{}`` logs an [A] value per agent); any further dimensions, or all of them without
            ``{}``, are reduced with the statistic's own operation (``tr/ratio_min/epoch_{}`` logs the
            minimum over agents of a [K, A] value). ``None``: not logged, only handed to callbacks.
        reduce: over ranks: ``mean``, ``sum``, ``min``, ``max``; ``spread`` (max − min: 0 when every rank
            agrees); ``ratio``: the value is (numerator, denominator), both summed over ranks and logged as
            their quotient, and not at all when the denominator is 0 (a mean over what every rank counted).
        prog_bar: also show it on the progress bar.
    """

    metric: str | None
    reduce: RankReduction = "mean"
    prog_bar: bool = False


_DIM_REDUCTION = {"mean": torch.mean, "sum": torch.sum, "min": torch.amin, "max": torch.amax,
                  "spread": torch.amax}


def reduce_over_ranks(
    values: Mapping[str, torch.Tensor], declared: Mapping[str, Statistic]
) -> dict[str, torch.Tensor]:
    """Each value reduced over ranks by its declaration (unchanged in a single process).

    Raises ``KeyError`` naming any statistic without a declaration.
    """
    undeclared = sorted(set(values) - set(declared))
    if undeclared:
        raise KeyError(f"statistics without a declaration: {undeclared}; declare them in the module's "
                       f"`statistics` table (known: {sorted(declared)}).")
    out = {}
    for name, value in values.items():
        op = declared[name].reduce
        if op == "spread":
            out[name] = reduce(value, "max") - reduce(value, "min")
        else:
            out[name] = reduce(value, "sum" if op == "ratio" else op)
    return out


def metric_values(
    values: Mapping[str, torch.Tensor], declared: Mapping[str, Statistic]
) -> tuple[dict[str, float], set[str]]:
    """The metric name → value pairs of (already reduced) statistics, and the names shown on the progress bar.

    Shapes: each value is a scalar, [n] (one metric per index with ``{}``) or [n, ...] (further dims reduced).
    """
    metrics: dict[str, float] = {}
    prog_bar: set[str] = set()
    for name, value in values.items():
        stat = declared[name]
        if stat.metric is None:
            continue
        value = value.detach().double()
        if stat.reduce == "ratio":
            numerator, denominator = value.tolist()
            if denominator == 0:
                continue
            named = {stat.metric: numerator / denominator}
        elif "{}" in stat.metric:
            per_index = value if value.dim() <= 1 else _DIM_REDUCTION[stat.reduce](value.flatten(1), dim=1)
            named = {stat.metric.format(i): v for i, v in enumerate(per_index.reshape(-1).tolist())}
        else:
            named = {stat.metric: float(_DIM_REDUCTION[stat.reduce](value))}
        metrics |= named
        if stat.prog_bar:
            prog_bar |= set(named)
    return metrics, prog_bar


def ratio(numerator: torch.Tensor, denominator: float) -> torch.Tensor:
    """A ``ratio`` statistic: (numerator, denominator) as one float64 tensor [2]."""
    numerator = numerator.detach().double()
    denominator = torch.tensor(float(denominator), dtype=torch.float64, device=numerator.device)
    return torch.stack([numerator, denominator])


def iteration_times(
    collect_s: float, marks: tuple[float, float, float, float], frames: int
) -> dict[str, torch.Tensor]:
    """The ``perf/*`` statistics of one iteration from its collection time and the ``perf_counter`` marks
    (start, advantages done, optimisation done, end) of its update; frames/s over collection and update."""
    start, advantages_done, optimise_done, end = marks
    update_s = end - start
    return {
        "collect_s": torch.tensor(collect_s),
        "advantages_s": torch.tensor(advantages_done - start),
        "optimise_s": torch.tensor(optimise_done - advantages_done),
        "statistics_s": torch.tensor(end - optimise_done),
        "update_s": torch.tensor(update_s),
        "frames_per_s": torch.tensor(frames / max(collect_s + update_s, 1e-9)),
    }


# What every algorithm logs each iteration (counters are logged by the module itself: train/frames,
# train/iterations and the MLflow step).
ITERATION = {
    "collect_s": Statistic("perf/collect_s", "max"),
    # update_s: everything after collection, split into advantages_s (GAE and the flattened batch),
    # optimise_s (the minibatch steps) and statistics_s (the iteration's divergences).
    "update_s": Statistic("perf/update_s", "max"),
    "advantages_s": Statistic("perf/advantages_s", "max"),
    "optimise_s": Statistic("perf/optimise_s", "max"),
    "statistics_s": Statistic("perf/statistics_s", "max"),
    "frames_per_s": Statistic("perf/frames_per_s", "min", prog_bar=True),
    "return_mean": Statistic("train/return_mean", "ratio", prog_bar=True),
    "param_checksum": Statistic("dist/param_divergence", "spread"),
    # With on_nonfinite "skip" (marl_lightning.safety.health): what this iteration dropped for NaN or Inf.
    "skipped_iterations": Statistic("health/skipped_iterations", "max"),
    "skipped_minibatches": Statistic("health/skipped_minibatches", "max"),
}

# The PPO family: the loss's diagnostics (means over the iteration's minibatches, ratio range per epoch)
# and the divergence of the updated policy from the collecting one, measured after the update.
PPO = {
    **ITERATION,
    "loss_objective": Statistic("loss/policy"),
    "loss_critic": Statistic("loss/value"),
    "loss_entropy": Statistic("loss/entropy"),
    "approx_kl": Statistic("tr/approx_kl/agent_{}"),
    "clip_fraction": Statistic("tr/clip_fraction/agent_{}"),
    "ratio_min": Statistic("tr/ratio_min/epoch_{}", "min"),
    "ratio_max": Statistic("tr/ratio_max/epoch_{}", "max"),
    "kl": Statistic("tr/kl/agent_{}"),
    "entropy": Statistic("train/entropy"),
    "tv": Statistic("tr/tv/agent_{}"),
    "tv_sum": Statistic("tr/tv_sum"),
    "joint_ratio_min": Statistic("tr/joint_ratio_min", "min"),
    "joint_ratio_max": Statistic("tr/joint_ratio_max", "max"),
}

EVALUATION = {
    "return_mean": Statistic("eval/return_mean", "ratio", prog_bar=True),
    "episodes": Statistic("eval/episodes", "sum"),
}
