"""Where trial time went, from trials.parquet rows."""

import pytest

from hpo.timing import time_summary, trial_times


def rung(trial_id, step, started, recorded, train, probes, tokens=100.0):
    return {
        "trial_id": trial_id,
        "step": step,
        "trial_started_at": started,
        "recorded_at": recorded,
        "train_seconds": train,
        "probe_seconds": probes,
        "tokens_seen": tokens,
    }


def test_a_trials_wall_time_runs_from_its_start_to_its_last_result():
    rows = [
        rung("b", 4, 200.0, 230.0, 20.0, 5.0),
        rung("a", 4, 100.0, 120.0, 12.0, 4.0),
        rung("a", 8, 100.0, 150.0, 30.0, 8.0, tokens=200.0),
        {"trial_id": "b", "step": 5, "recorded_at": 240.0, "trial_started_at": 200.0, "objective": -1.0},
    ]
    first, second = trial_times(rows)
    assert (first.trial_id, second.trial_id) == ("a", "b")  # in start order
    assert (first.wall, first.train, first.probes, first.tokens) == (50.0, 30.0, 8.0, 200.0)  # the last rung
    assert first.overhead == pytest.approx(12.0) and first.overhead_share == pytest.approx(0.24)
    assert second.wall == 40.0 and second.train == 20.0  # a failing ending adds wall time, not training


def test_the_summary_gives_shares_of_the_summed_wall_time():
    times = trial_times([rung("a", 4, 0.0, 100.0, 80.0, 15.0, tokens=800.0), rung("b", 4, 0.0, 100.0, 90.0, 5.0)])
    line = time_summary(times)
    assert line.startswith("trial time: 200 s over 2 trials: training 85.0%, probes 10.0%")
    assert "engine overhead 5.0% (5.0 s per trial)" in line and "5 tokens/s while training" in line
    assert time_summary([]) == "trial time: no trial reported a training rung"
