"""The selected runs as marl-eval's raw-data JSON (``marl_eval.utils.data_processing_utils``'s input):

    {environment: {task: {algorithm: {run: {"step_<j>": {"step_count": frames, <metric>: [value]}, ...,
                                            "absolute_metrics": {<metric>: [final value]}}}}}}

marl-eval reads the run and step keys of the first algorithm's first run for all of them, and the absolute
metrics as each run's last key, so runs are keyed by position (``run_0`` … in seed order, not by seed) and
steps by index (``step_0`` … in frame order). Its metric lists hold one value per evaluation episode;
MLflow keeps only the logged mean, so each list holds that one value. marl-eval splits metric names at
``_`` to find normalised ones, so the metric's key is its MLflow name's last component without a ``_mean``
suffix and without underscores (``eval/return_mean`` → ``return``).
"""

from __future__ import annotations

import json
from pathlib import Path

from marl_lightning.compare.selection import Selection

ENVIRONMENT = "marl_lightning"  # every task under one environment, so marl-eval aggregates across them
ABSOLUTE = "absolute_metrics"


def metric_key(metric: str) -> str:
    name = metric.rsplit("/", 1)[-1]
    name = name.removesuffix("_mean") or name
    return name.replace("_", "")


def run_keys(selection: Selection) -> dict[str, str]:
    """Run id → its marl-eval run key (``run_<position in seed order>`` within its task and group)."""
    keys = {}
    for task in selection.tasks:
        for group in selection.groups:
            for i, run in enumerate(selection.runs_of(task, group)):
                keys[run.run_id] = f"run_{i}"
    return keys


def marl_eval_data(selection: Selection) -> dict:
    key = metric_key(selection.metric)
    data: dict = {ENVIRONMENT: {}}
    for task in selection.tasks:
        algorithms = data[ENVIRONMENT].setdefault(task, {})
        for group in selection.groups:
            runs = selection.runs_of(task, group)
            if not runs:
                continue
            algorithms[group] = {
                f"run_{i}": {
                    **{
                        f"step_{j}": {"step_count": int(frames), key: [float(value)]}
                        for j, (frames, value) in enumerate(zip(run.frames, run.values, strict=True))
                    },
                    ABSOLUTE: {key: [run.final]},
                }
                for i, run in enumerate(runs)
            }
    return data


def write(selection: Selection, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(marl_eval_data(selection), indent=1))
    return path
