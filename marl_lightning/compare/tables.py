"""The comparison's tables: each written as CSV (plain numbers, one column per bound, for scripts) and as
Markdown and LaTeX (formatted: ``mean ± half-width``, ``IQM [low, high]``)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from marl_lightning.compare.normalisation import Normalisation
from marl_lightning.compare.statistics import Aggregate, FinalValue, Improvement


def number(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _interval(value: float, low: float, high: float) -> str:
    return f"{number(value)} [{number(low)}, {number(high)}]"


def _plus_minus(value: float, low: float, high: float) -> str:
    if not math.isfinite(low):
        return f"{number(value)} ± n/a"
    return f"{number(value)} ± {number((high - low) / 2)}"


def _frames(low: int, high: int) -> str:
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (without pandas' optional ``tabulate`` dependency)."""
    cells = [[str(c) for c in frame.columns]] + [
        [str(v).replace("|", "\\|") for v in row] for row in frame.values
    ]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("---" for _ in frame.columns) + "|")
    return "\n".join(lines) + "\n"


def latex(frame: pd.DataFrame) -> str:
    return frame.to_latex(index=False, escape=True).replace("±", r"$\pm$").replace("–", "--")


def write(numeric: pd.DataFrame, display: pd.DataFrame, stem: Path) -> list[Path]:
    """``<stem>.csv`` (numbers), ``<stem>.md`` and ``<stem>.tex`` (formatted); returns their paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(s) for s in (".csv", ".md", ".tex")]
    numeric.to_csv(paths[0], index=False)
    paths[1].write_text(markdown(display))
    paths[2].write_text(latex(display))
    return paths


def final_value_tables(rows: list[FinalValue], metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    numeric = pd.DataFrame(
        {
            "task": [r.task for r in rows],
            "group": [r.group for r in rows],
            "n_seeds": [r.n_seeds for r in rows],
            "mean": [r.mean for r in rows],
            "mean_ci_low": [r.mean_low for r in rows],
            "mean_ci_high": [r.mean_high for r in rows],
            "iqm": [r.iqm for r in rows],
            "iqm_ci_low": [r.iqm_low for r in rows],
            "iqm_ci_high": [r.iqm_high for r in rows],
            "frames_min": [r.frames_min for r in rows],
            "frames_max": [r.frames_max for r in rows],
        }
    )
    display = pd.DataFrame(
        {
            "group": [r.group for r in rows],
            f"final {metric}: mean ± 95% CI (t)": [
                _plus_minus(r.mean, r.mean_low, r.mean_high) for r in rows
            ],
            "IQM [95% CI]": [_interval(r.iqm, r.iqm_low, r.iqm_high) for r in rows],
            "seeds": [r.n_seeds for r in rows],
            "frames": [_frames(r.frames_min, r.frames_max) for r in rows],
        }
    )
    return numeric, display


def aggregate_tables(rows: list[Aggregate], n_tasks: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    numeric = pd.DataFrame(
        {
            "group": [r.group for r in rows],
            "statistic": [r.statistic for r in rows],
            "value": [r.value for r in rows],
            "ci_low": [r.low for r in rows],
            "ci_high": [r.high for r in rows],
            "n_tasks": n_tasks,
        }
    )
    groups = list(dict.fromkeys(r.group for r in rows))
    statistics = list(dict.fromkeys(r.statistic for r in rows))
    by_key = {(r.group, r.statistic): r for r in rows}
    display = pd.DataFrame(
        {
            "group": groups,
            **{
                f"{s} [95% CI]": [
                    _interval(by_key[g, s].value, by_key[g, s].low, by_key[g, s].high) for g in groups
                ]
                for s in statistics
            },
        }
    )
    return numeric, display


def improvement_tables(rows: list[Improvement]) -> tuple[pd.DataFrame, pd.DataFrame]:
    numeric = pd.DataFrame(
        {
            "x": [r.x for r in rows],
            "y": [r.y for r in rows],
            "probability_x_beats_y": [r.probability for r in rows],
            "ci_low": [r.low for r in rows],
            "ci_high": [r.high for r in rows],
        }
    )
    display = pd.DataFrame(
        {
            "X": [r.x for r in rows],
            "Y": [r.y for r in rows],
            "P(X > Y) [95% CI]": [_interval(r.probability, r.low, r.high) for r in rows],
        }
    )
    return numeric, display


def normalisation_tables(normalisations: list[Normalisation]) -> tuple[pd.DataFrame, pd.DataFrame]:
    numeric = pd.DataFrame(
        {
            "task": [n.task for n in normalisations],
            "method": [n.method for n in normalisations],
            "score_0_at": [n.low for n in normalisations],
            "score_1_at": [n.high for n in normalisations],
            "reason": [n.reason for n in normalisations],
        }
    )
    display = numeric.assign(
        score_0_at=[number(n.low) for n in normalisations],
        score_1_at=[number(n.high) for n in normalisations],
    ).rename(columns={"score_0_at": "score 0 at", "score_1_at": "score 1 at"})
    return numeric, display
