"""The comparison's tables: each written as CSV (plain numbers, one column per bound, for scripts) and as
Markdown and LaTeX (formatted: ``mean ± half-width``, ``IQM [low, high]``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import Any

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


def _columns(rows: list, **columns: str | Callable[[Any], object]) -> pd.DataFrame:
    """A frame with one column per keyword, in order: each cell the row's attribute of that name (a string)
    or the function's value on the row."""
    cells = {name: (attrgetter(get) if isinstance(get, str) else get) for name, get in columns.items()}
    return pd.DataFrame({name: [cell(r) for r in rows] for name, cell in cells.items()})


def final_value_tables(rows: list[FinalValue], metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    numeric = _columns(
        rows, task="task", group="group", n_seeds="n_seeds", mean="mean", mean_ci_low="mean_low",
        mean_ci_high="mean_high", iqm="iqm", iqm_ci_low="iqm_low", iqm_ci_high="iqm_high",
        frames_min="frames_min", frames_max="frames_max",
    )
    display = _columns(rows, **{
        "group": "group",
        f"final {metric}: mean ± 95% CI (t)": lambda r: _plus_minus(r.mean, r.mean_low, r.mean_high),
        "IQM [95% CI]": lambda r: _interval(r.iqm, r.iqm_low, r.iqm_high),
        "seeds": "n_seeds",
        "frames": lambda r: _frames(r.frames_min, r.frames_max),
    })
    return numeric, display


def aggregate_tables(rows: list[Aggregate], n_tasks: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    numeric = _columns(rows, group="group", statistic="statistic", value="value", ci_low="low",
                       ci_high="high").assign(n_tasks=n_tasks)
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
    numeric = _columns(rows, x="x", y="y", probability_x_beats_y="probability", ci_low="low", ci_high="high")
    display = _columns(rows, **{"X": "x", "Y": "y",
                                "P(X > Y) [95% CI]": lambda r: _interval(r.probability, r.low, r.high)})
    return numeric, display


def normalisation_tables(normalisations: list[Normalisation]) -> tuple[pd.DataFrame, pd.DataFrame]:
    numeric = _columns(normalisations, task="task", method="method", score_0_at="low", score_1_at="high",
                       reason="reason")
    display = numeric.assign(
        score_0_at=[number(n.low) for n in normalisations],
        score_1_at=[number(n.high) for n in normalisations],
    ).rename(columns={"score_0_at": "score 0 at", "score_1_at": "score 1 at"})
    return numeric, display
