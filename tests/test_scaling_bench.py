"""The scaling benchmark: its speedup arithmetic and goal lines, then a tiny LCBench run end to end.

The LCBench part is skipped without onnxruntime or the surrogate's data folder.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.search.metrics import Summary
from benchmarks.search.scaling import goal_lines, speedup


def summary(key: str, fraction: float, hours: float) -> Summary:
    return Summary(key, 10, fraction, 1.0, 0.0, 0.0, 100.0, 1.0, hours, fraction)


def test_the_speedup_is_one_workers_hours_to_match_over_these():
    assert speedup(summary("ours", 0.1, 0.4), summary("ours x16", 0.2, 0.025)) == pytest.approx(16.0)
    assert math.isnan(speedup(summary("ours", 0.1, 0.4), summary("ours x16", math.inf, math.inf)))
    assert math.isnan(speedup(None, summary("ours x16", 0.2, 0.025)))


def test_the_goals_are_checked_against_one_worker_and_random_asha():
    overall = {
        "ours": summary("ours", 0.11, 0.4),
        "ours x16": summary("ours x16", 0.17, 0.03),
        "random+asha x16": summary("random+asha x16", 0.4, 0.07),
        "ours x64": summary("ours x64", 0.6, 0.02),
        "random+asha x64": summary("random+asha x64", 0.7, 0.03),
    }
    lines = "\n".join(goal_lines(overall, seeds=10))
    assert "one worker: budget fraction 0.110 (no worse than 0.115): met" in lines
    assert "16 workers: speedup 13.3x (goal >= 12x): met; budget fraction 0.170 (goal <= 0.18): met" in lines
    assert "2.3x sooner than random+asha (goal >= 2x): met" in lines
    assert "64 workers: speedup 20.0x (goal >= 35x): NOT met; 1.5x sooner than random+asha (goal >= 1x): met" in lines
    fewer = "\n".join(goal_lines(overall, seeds=5))  # other targets: the one-worker figure is not comparable
    assert "one worker: budget fraction 0.110 on 5 seeds" in fewer and "not checked" in fewer


pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny_scaling_run(tmp_path_factory):
    from benchmarks.search.lcbench import default_path
    from benchmarks.search.scaling import main

    if not (default_path() / "model.onnx").is_file():
        pytest.skip(f"LCBench data not found at {default_path()}")
    out = tmp_path_factory.mktemp("scaling-bench")
    argv = ["--tasks", "167149", "--seeds", "1", "--budget", "4", "--workers", "1,2", "--peer-workers", "2"]
    assert main([*argv, "--jobs", "1", "--out", str(out)]) == 0
    return out


def test_the_tiny_run_prints_every_method_at_every_worker_count(tiny_scaling_run):
    table = (tiny_scaling_run / "results.md").read_text()
    for row in (
        "| ours | 1 |",
        "| ours | 2 |",
        "| random+asha | 1 |",
        "| random+asha | 2 |",
        "| ray-optuna+asha | 2 |",
    ):
        assert row in table, row
    assert "speedup over 1 worker" in table and "## Goals" in table
    runs = json.loads((tiny_scaling_run / "results.json").read_text())["runs"]
    two = [run for run in runs if run["method"] in ("ours x2", "random+asha x2", "ray-optuna+asha x2")]
    assert len(two) == 3 and all(run["max_running"] == 2 for run in two)
