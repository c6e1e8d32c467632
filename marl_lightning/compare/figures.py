"""The comparison's PNG figures, drawn with matplotlib's object API on the Agg canvas (no display, no
pyplot state): one colour per group throughout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from marl_lightning.compare.statistics import AGGREGATES, Aggregate, Curve, Improvement, Profiles

DPI = 120


def colours(groups: list[str]) -> dict[str, str]:
    return {group: f"C{i % 10}" for i, group in enumerate(groups)}


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def curves(
    series: list[Curve],
    colour: dict[str, str],
    title: str,
    ylabel: str,
    path: Path,
    references: dict[str, float] | None = None,
) -> Path:
    """Left: mean over seeds with its 95% t band; right: IQM with its 95% stratified-bootstrap band.
    ``references`` (label -> value, e.g. the task's DP optimum) are drawn as dashed lines on both."""
    figure = Figure(figsize=(11, 4))
    left, right = figure.subplots(1, 2, sharey=True)
    for (label, value), style in zip((references or {}).items(), ("--", ":", "-."), strict=False):
        for axis in (left, right):
            axis.axhline(value, color="black", linestyle=style, linewidth=1, label=label)
    for curve in series:
        label = f"{curve.group} (n={curve.n_seeds})"
        c = colour[curve.group]
        left.plot(curve.frames, curve.mean, color=c, label=label)
        left.fill_between(curve.frames, curve.mean_low, curve.mean_high, color=c, alpha=0.2)
        right.plot(curve.frames, curve.iqm, color=c, label=label)
        right.fill_between(curve.frames, curve.iqm_low, curve.iqm_high, color=c, alpha=0.2)
    left.set_title("mean, 95% CI (Student t)")
    right.set_title("IQM, 95% CI (stratified bootstrap)")
    for axis in (left, right):
        axis.set_xlabel("frames")
        axis.grid(alpha=0.3)
    left.set_ylabel(ylabel)
    left.legend(fontsize="small")
    figure.suptitle(title)
    return _save(figure, path)


def aggregates(rows: list[Aggregate], colour: dict[str, str], path: Path) -> Path:
    """One panel per aggregate statistic: each group's point estimate and 95% interval."""
    groups = list(dict.fromkeys(r.group for r in rows))
    figure = Figure(figsize=(3.2 * len(AGGREGATES), 0.5 * len(groups) + 1.5))
    axes = figure.subplots(1, len(AGGREGATES), sharey=True)
    by_key = {(r.group, r.statistic): r for r in rows}
    for axis, statistic in zip(axes, AGGREGATES, strict=True):
        for y, group in enumerate(groups):
            r = by_key[group, statistic]
            axis.plot([r.low, r.high], [y, y], color=colour[group], linewidth=6, alpha=0.6)
            axis.plot([r.value], [y], "|", color="black", markersize=14)
        axis.set_title(statistic)
        axis.set_xlabel("normalised score")
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(groups)), groups)
    return _save(figure, path)


def improvements(rows: list[Improvement], colour: dict[str, str], path: Path) -> Path:
    figure = Figure(figsize=(6, 0.45 * len(rows) + 1.5))
    axis = figure.subplots()
    for y, r in enumerate(rows):
        axis.plot([r.low, r.high], [y, y], color=colour[r.x], linewidth=6, alpha=0.6, solid_capstyle="round")
        axis.plot([r.probability], [y], "o", color="black", markersize=5)  # visible at 0 and 1 too
    axis.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    axis.set_yticks(range(len(rows)), [f"P({r.x} > {r.y})" for r in rows])
    axis.set_xlim(-0.03, 1.03)
    axis.set_xlabel("probability of improvement, 95% CI")
    axis.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def performance_profiles(profiles: Profiles, colour: dict[str, str], path: Path) -> Path:
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    for group, profile in profiles.profiles.items():
        axis.plot(profiles.taus, profile, color=colour[group], label=group)
        low, high = np.asarray(profiles.intervals[group])
        axis.fill_between(profiles.taus, low, high, color=colour[group], alpha=0.2)
    axis.set_xlabel("normalised score τ")
    axis.set_ylabel("fraction of runs with score > τ")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return _save(figure, path)
