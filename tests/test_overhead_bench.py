"""The overhead benchmark: the searcher timing on a small study, and a short end-to-end run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.overhead import between_trials, markdown, max_running, measure_ask_tell
from benchmarks.search.peers import SEAMS


def test_ask_tell_timing_runs_the_real_searcher_on_a_filled_study(tmp_path):
    rows = [measure_ask_tell(30, seam, repeats=3, workdir=tmp_path) for seam in SEAMS]
    for row in rows:
        assert row["trials"] == 30 and row["ask_ms"] > 0 and row["tell_ms"] > 0
    assert list(tmp_path.glob("ask-tell-*.journal"))  # the journal lives on disk, as in a sweep
    trial_row = {
        "trial_seconds": 1.0,
        "trials": 2,
        "stopped_early": 1,
        "wall_s": 4.0,
        "fixed_s": 1.0,
        "trainable_s": 2.5,
        "overhead_per_trial_s": 0.25,
        "overhead_share": 0.25,
    }
    table = markdown([trial_row], rows)
    assert "| 1 s | 2 | 1 |" in table and "<= 0.3 s: met" in table and "| rung | 30 |" in table


@pytest.mark.slow  # a minute of real sweeps; the benchmark's parts are covered by the fast tests above
def test_the_benchmark_runs_end_to_end_from_a_relative_out_folder(tmp_path):
    """Real Ray Tune trials through the engine's searcher and scheduler; results where --out says."""
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "benchmarks.overhead", "--out", "out", "--short-trials", "3"]
    command += ["--long-trials", "1", "--repeats", "1", "--sweep-trials", "4", "--concurrency", "2"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| 1 s | 3 |" in table and "| 10 s | 1 |" in table
    assert "| 1 s | 2 | 4 |" in table and "| 10 s | 2 | 4 |" in table  # through the sweep driver, 2 at a time
    assert not (tmp_path / "out" / "scratch").exists()


def test_the_searcher_is_timed_with_trials_still_running(tmp_path):
    row = measure_ask_tell(30, "rung", repeats=2, workdir=tmp_path, pending=8)
    assert row["pending"] == 8 and row["ask_ms"] > 0


def test_per_trial_overhead_counts_the_gaps_on_each_worker_and_how_many_ran_at_once():
    metrics = [  # in order of start: worker 1 runs two trials, worker 2 one
        {"worker_pid": 1, "started_at": 0.0, "reported_at": 1.0},
        {"worker_pid": 2, "started_at": 0.5, "reported_at": 2.0},
        {"worker_pid": 1, "started_at": 1.25, "reported_at": 3.0},
    ]
    assert between_trials(metrics) == [0.25]  # only the second trial on worker 1 waited for one before it
    assert max_running(metrics) == 2
