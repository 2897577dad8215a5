"""The live view: plain lines, a progress bar with an ETA, and a compact table of trials."""

from __future__ import annotations

from types import SimpleNamespace

from hpo.run.live import LiveView, progress_line


def test_progress_line_estimates_the_rest_from_the_mean_trial_time():
    assert progress_line(3, 12, 90.0) == "[#####---------------] 3/12 trials, 01:30 elapsed, ETA 04:30"
    assert progress_line(0, 4, 5.0).endswith("ETA ?")
    assert progress_line(4, 4, 3725.0) == "[####################] 4/4 trials, 1:02:05 elapsed, ETA done"


def trial(trial_id: str, last: dict | None = None):
    return SimpleNamespace(
        trial_id=trial_id, config={"learning_rate": 0.001}, last_result=last or {}, status="TERMINATED"
    )


def test_the_view_prints_rungs_progress_and_a_table_of_trials():
    lines: list[str] = []
    view = LiveView(total_trials=2, max_steps=8, write=lines.append, table_every=3)
    a, b = trial("a", {"step": 8, "final": 1.0}), trial("b", {"step": 4})
    view.on_trial_start(0, [], a)
    view.on_trial_start(0, [], b)
    rung = {"domain_lift": 0.1, "general_regression": 0.02, "domain_exact_match": 0.5}
    view.on_trial_result(0, [], a, {"step": 4, "objective": 0.08, **rung})
    view.on_trial_result(0, [], b, {"step": 4, "objective": -0.2, **rung, "violation": "general regression 2 > 1"})
    view.on_trial_complete(0, [], b)
    view.on_trial_result(0, [], a, {"step": 8, "objective": 0.3, **rung})
    view.on_trial_complete(0, [], a)
    view.on_experiment_end([a, b])
    text = "".join(lines)
    assert "trial 1 step 4/8: objective +0.080, exact match 0.500 | best +0.080 (trial 1 step 4)" in text
    assert "FAILING: general regression 2 > 1" in text
    assert "trial 2 stopped at step 4 (1/2 done)" in text
    assert "[##########----------] 1/2 trials" in text and "ETA " in text
    table = lines[-1].splitlines()
    assert table[0].split() == ["trial", "state", "rung", "objective", "lift", "regression"]
    assert table[1].split() == ["1", "completed", "8/8", "+0.300", "+0.100", "0.020"]
    assert table[2].split() == ["2", "stopped", "4/8", "-0.200", "+0.100", "0.020"]
    assert table[3] == "best +0.300 (trial 1 step 8)"
    assert sum(1 for line in lines if line.startswith("trial  state")) == 2  # every 3rd rung and at the end


def test_a_resumed_view_goes_on_from_the_record(tmp_path):
    """After a resume the view ended at "4/6 done" and named a different best than the export."""
    from hpo.results.rundir import TrialTable
    from hpo.run.continuation import CONTINUES

    table = TrialTable(tmp_path / "trials.parquet")
    rung = {"domain_lift": 0.1, "general_regression": 0.0}
    table.start("a")
    table.add_result("a", {}, {"step": 4, "objective": 0.5, **rung})
    table.finish("a", "stopped", "asha")
    table.start("b")
    table.add_result("b", {}, {"step": 4, "objective": 9.0, **rung, "violation": "general regression 2 > 1"})
    table.add_result("b", {}, {"step": 8, "objective": 0.2, **rung})
    lines: list[str] = []
    view = LiveView(total_trials=3, max_steps=8, write=lines.append, table_every=0)
    view.seed(table)
    assert view.best_text() == "best +0.500 (trial 1 step 4)"  # a failing rung is never the best
    again = SimpleNamespace(
        trial_id="new", config={"x": 1, CONTINUES: "b"}, last_result={"step": 8, "final": 1.0}, status="TERMINATED"
    )
    view.on_trial_start(0, [], again)
    view.on_trial_complete(0, [], again)
    fresh = SimpleNamespace(
        trial_id="c", config={"x": 2}, last_result={"step": 4, "diverged": 1.0, "final": 1.0}, status="TERMINATED"
    )
    view.on_trial_start(0, [], fresh)
    view.on_trial_complete(0, [], fresh)
    text = "".join(lines)
    assert "trial 2 continued from step 8: x=1" in text and "continues_trial" not in text
    assert "trial 2 completed (2/3 done)" in text and "trial 3 diverged (3/3 done)" in text
