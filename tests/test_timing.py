"""Where trial time went, from trials.parquet rows."""

import pytest

from hpo.run.timing import time_summary, trial_times


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


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_where_the_time_went_gives_each_phase_its_share_and_splits_the_trials():
    from hpo.run.timing import HELD_OUT, TRIALS, Phases, note, where_the_time_went

    clock = Clock()
    phases = Phases(clock=clock)
    phases.seconds.update({"baseline": 12.0, TRIALS: 60.0, HELD_OUT: 24.0})
    clock.now += 120.0
    times = trial_times([rung("a", 4, 0.0, 100.0, 80.0, 15.0), rung("b", 4, 0.0, 20.0, 10.0, 5.0)])
    note(HELD_OUT, "the base model's test split from the cache", phases)
    lines = where_the_time_went(phases, times, concurrency=2)
    assert lines[0] == "where the time went: 2.0 min in all"
    assert [line.split("  ")[1] for line in lines[1:]] == ["baseline", "trials", "held-out check", "other"]
    assert lines[2].split()[1:4] == ["1.0", "min", "50%"]
    assert "training 75%, probes 17%, engine overhead 8% of 120 s of trial time (2 trials, up to 2 at a time)" in lines[2]
    assert lines[3].endswith("20%  the base model's test split from the cache")
    assert lines[4].split()[1:] == ["0.4", "min", "20%"]  # what no phase counted: 120 - 96 s


def test_a_phase_adds_up_every_time_it_runs_even_when_it_raises():
    from hpo.run.timing import Phases, note, phase

    clock = Clock()
    phases = Phases(clock=clock)

    @phase("work", phases)
    def work(seconds: float, fail: bool = False) -> None:
        clock.now += seconds
        if fail:
            raise RuntimeError("stop")

    work(2.0)
    with pytest.raises(RuntimeError):
        work(3.0, fail=True)
    assert phases.seconds == {"work": 5.0}
    note("work", "twice", phases)
    phases.reset()
    assert phases.seconds == {} and phases.notes == {} and phases.elapsed() == 0.0
