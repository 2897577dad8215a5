"""The scaling benchmark: its speedup arithmetic and goal lines, then a tiny LCBench run end to end.

The LCBench part is skipped without onnxruntime or the surrogate's data folder.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.search import budgets
from benchmarks.search.metrics import Run, Summary
from benchmarks.search.problem import Reference
from benchmarks.search.scaling import one_worker_line, speedup


def summary(key: str, fraction: float, hours: float, regret: float = 0.0) -> Summary:
    return Summary(key, 10, fraction, 1.0, regret, regret, 100.0, 1.0, hours, fraction)


def run(method: str, seed: int, epochs: tuple[int, ...], values: tuple[float, ...], task: str = "t") -> Run:
    return Run(method, task, seed, epochs, values, tuple(10.0 * e for e in epochs), (0,) * len(epochs),
               5, 1000.0, 1, 0, 0.1)  # fmt: skip


def test_the_speedup_is_one_workers_hours_to_match_over_these():
    assert speedup(summary("ours", 0.1, 0.4), summary("ours x16", 0.2, 0.025)) == pytest.approx(16.0)
    assert math.isnan(speedup(summary("ours", 0.1, 0.4), summary("ours x16", math.inf, math.inf)))
    assert math.isnan(speedup(None, summary("ours x16", 0.2, 0.025)))


def test_one_worker_is_checked_against_the_search_table_on_as_many_seeds():
    overall = {"ours": summary("ours", 0.11, 0.4)}
    assert "one worker: budget fraction 0.110 (no worse than 0.115): met" in one_worker_line(overall, 10)[0]
    fewer = one_worker_line(overall, 5)[0]  # other targets: the one-worker figure is not comparable
    assert "one worker: budget fraction 0.110 on 5 seeds" in fewer and "not checked" in fewer


def test_a_run_read_at_a_smaller_budget_keeps_only_what_it_found_by_then():
    long = run("ours", 0, (3, 60, 400), (50.0, 70.0, 90.0))
    cut = budgets.within(long, 104)
    assert (cut.epochs, cut.values, cut.seconds) == ((3, 60), (50.0, 70.0), (30.0, 600.0))
    assert cut.incumbent_at(2600) == 70.0 and math.isinf(cut.seconds_to_reach(90.0))


def test_each_budget_has_its_own_target_and_a_peer_with_a_smaller_budget_is_left_out_of_larger_ones():
    runs = [
        run("random", 0, (52, 520), (60.0, 80.0)),
        run("random", 1, (52, 520), (70.0, 90.0)),
        run("ours", 0, (10, 300), (75.0, 95.0)),
        run("ours", 1, (10, 300), (75.0, 95.0)),
        run("syne-mobster", 0, (10,), (99.0,)),
    ]
    five, ten = budgets.at_budgets(runs, {"t": Reference(100.0, 50.0, 0.0)}, "random", (5, 10), {"syne-mobster": 5})
    assert five.goal == {"t": 65.0} and ten.goal == {"t": 85.0}  # medians of random search's incumbents by then
    assert five.summaries["ours"].hours_to_match == pytest.approx(100 / 3600)
    assert ten.summaries["ours"].hours_to_match == pytest.approx(3000 / 3600)
    assert "syne-mobster" in five.summaries and "syne-mobster" not in ten.summaries


def test_paired_runs_count_who_matched_sooner_and_leave_out_pairs_where_neither_did():
    ours = [run("ours", s, (10,), (v,)) for s, v in enumerate((90.0, 90.0, 50.0, 50.0))]
    peer = [run("syne-bohb", s, (20,), (v,)) for s, v in enumerate((90.0, 50.0, 90.0, 50.0))]
    paired = budgets.pair(ours, peer, {"t": 80.0})
    assert (paired.sooner, paired.later, paired.runs) == (2, 1, 3) and paired.share == pytest.approx(2 / 3)


def test_the_goals_name_who_is_ahead_at_every_budget_and_worker_count():
    reference = {"t": Reference(100.0, 50.0, 0.0)}
    runs = [run("random", s, (52,), (80.0,)) for s in range(2)]
    for workers, ours_at, bohb_at in ((1, 100, 200), (16, 10, 5)):
        suffix = "" if workers == 1 else f" x{workers}"
        runs += [run("ours" + suffix, s, (ours_at,), (85.0,)) for s in range(2)]
        runs += [run("syne-bohb" + suffix, s, (bohb_at,), (81.0,)) for s in range(2)]
    found = budgets.at_budgets(runs, reference, "random", (5,))
    lines = "\n".join(budgets.goal_lines(found, ["ours", "syne-bohb"], [1, 16], "ours", "syne-bohb"))
    assert "5 trainings, 1 worker: sooner than every other method: met; sooner than syne-bohb in 2 of 2" in lines
    assert "5 trainings, 16 workers: sooner than every other method: NOT met (syne-bohb)" in lines
    assert "speedup 10.0x over one worker (goal >= 10x): met" in lines
    assert "regret 0.300, the lowest: met" in lines  # (100 - 85) / (100 - 50)
    table = "\n".join(budgets.budget_tables(found, ["ours", "syne-bohb"], [1, 16], "ours", "syne-bohb"))
    assert (
        "| ours | 0.278 / 0.028 | 0.300 / 0.300 |" in table
        and "| ours sooner than syne-bohb, paired | 2 of 2 / 0 of 2 | |" in table
    )


pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny_scaling_run(tmp_path_factory):
    from benchmarks.search.lcbench import default_path
    from benchmarks.search.scaling import main

    if not (default_path() / "model.onnx").is_file():
        pytest.skip(f"LCBench data not found at {default_path()}")
    out = tmp_path_factory.mktemp("scaling-bench")
    argv = ["--tasks", "167149", "--seeds", "1", "--budget", "6", "--workers", "1,2", "--methods", "ours,random+asha"]
    assert main([*argv, "--jobs", "1", "--out", str(out)]) == 0
    return out


def test_the_tiny_run_prints_every_method_at_every_worker_count(tiny_scaling_run):
    table = (tiny_scaling_run / "results.md").read_text()
    for row in ("| ours | 1 |", "| ours | 2 |", "| random+asha | 1 |", "| random+asha | 2 |"):
        assert row in table, row
    assert "speedup over 1 worker" in table and "## Goals" in table
    assert "### 5 full trainings" in table and "### 6 full trainings" in table  # the small budget, then the run's
    assert "5 trainings, 2 workers: sooner than every other method:" in table
    runs = json.loads((tiny_scaling_run / "results.json").read_text())["runs"]
    two = [run for run in runs if run["method"] in ("ours x2", "random+asha x2")]
    assert len(two) == 2 and all(run["max_running"] == 2 for run in two)
