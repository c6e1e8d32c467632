"""Normalised scores per task: (return − low) / (high − low), 0 for the low reference and 1 for the high one.

The references are the task's own (the tags ``task.optimum`` and ``task.random_return``: the optimal and the
uniformly random policy's expected team return) where every selected run of the task carries the same
values, else the minimum and maximum final value over all selected runs of the task ("min-max").
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from marl_lightning.compare.selection import RunHistory
from marl_lightning.tracking import run_tags

REFERENCE = "reference"
MIN_MAX = "min-max"


@dataclasses.dataclass(frozen=True)
class Normalisation:
    task: str
    method: str  # REFERENCE or MIN_MAX
    low: float  # the return mapped to 0
    high: float  # the return mapped to 1
    reason: str  # why this method, in words

    def __call__(self, returns: np.ndarray | float) -> np.ndarray:
        scale = self.high - self.low
        return (np.asarray(returns, dtype=np.float64) - self.low) / (scale if scale != 0 else 1.0)


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def normalisation(task: str, runs: list[RunHistory]) -> Normalisation:
    """How the final values and curves of ``task`` (all its selected ``runs``) become scores."""
    references = [
        (_float(r.tags.get(run_tags.TASK_RANDOM)), _float(r.tags.get(run_tags.TASK_OPTIMUM))) for r in runs
    ]
    complete = [pair for pair in references if None not in pair]
    tags = f"{run_tags.TASK_OPTIMUM}/{run_tags.TASK_RANDOM}"
    if len(complete) == len(runs):
        lows, highs = np.array(complete).T
        if np.allclose(lows, lows[0]) and np.allclose(highs, highs[0]) and highs[0] != lows[0]:
            return Normalisation(
                task, REFERENCE, float(lows[0]), float(highs[0]), f"every run has the tags {tags}"
            )
        reason = f"the runs' tags {tags} differ or are equal to each other"
    elif complete:
        reason = f"only {len(complete)} of the {len(runs)} runs have the tags {tags}"
    else:
        reason = f"the runs have no tags {tags}"
    finals = np.array([r.final for r in runs])
    low, high = float(finals.min()), float(finals.max())
    if high == low:
        reason += "; all final values are equal, so scores are the returns minus that value"
    return Normalisation(
        task, MIN_MAX, low, high, reason + "; min-max over the final values of the task's runs"
    )
