"""callbacks.IterationTimes (what benchmarks/throughput.py reads) and the module's split of update_s."""

from __future__ import annotations

import json

import pytest

from marl_lightning.cli import MarlCLI
from tests.conftest import cli_args

pytestmark = pytest.mark.simulator

PARTS = ("collect_s", "advantages_s", "optimise_s", "statistics_s")


def test_one_line_per_iteration_with_its_parts_inside_its_wall_time(in_tmp):
    path = in_tmp / "times" / "iterations.jsonl"
    callbacks = json.dumps([{"class_path": "callbacks.IterationTimes", "init_args": {"path": str(path)}}])
    cli = MarlCLI(args=cli_args(
        "fit", "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
        "--trainer.callbacks", callbacks, "--model.total_frames", "600",
    ))
    per_iteration = cli.datamodule.frames_per_batch
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [1, 2, 3]
    assert [line["frames"] for line in lines] == [per_iteration, 2 * per_iteration, 3 * per_iteration]
    for line in lines:
        assert all(line[name] > 0 for name in PARTS)
        # the parts are timed inside the iteration the wall time spans
        assert line["wall_s"] >= sum(line[name] for name in PARTS)
        assert 0 < line["rss_mib"] <= line["peak_rss_mib"]
    assert lines[0]["peak_rss_mib"] <= lines[-1]["peak_rss_mib"]
    logged = cli.trainer.callback_metrics
    # update_s (all after collection) is exactly the sum of its three parts
    parts = sum(float(logged[f"perf/{name}"]) for name in ("advantages_s", "optimise_s", "statistics_s"))
    assert float(logged["perf/update_s"]) == pytest.approx(parts, abs=1e-5)
    assert float(logged["perf/collect_s"]) == pytest.approx(lines[-1]["collect_s"], rel=1e-5)
