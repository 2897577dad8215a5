import math

import pyarrow.parquet as pq

from hpo.results.rundir import TrialTable


def test_one_row_per_rung_and_the_final_status_on_every_row(tmp_path):
    table = TrialTable(tmp_path / "trials.parquet")
    table.add_result("a", {"learning_rate": 1e-4}, {"step": 2, "objective": 0.1, "pid": 7})
    table.add_result("a", {"learning_rate": 1e-4}, {"step": 4, "objective": math.nan})
    table.add_result("b", {"learning_rate": 1e-5}, {"step": 2, "objective": 0.3})
    table.finish("a", "stopped", "asha: below the rung cutoff at step 4")
    rows = pq.read_table(tmp_path / "trials.parquet").to_pylist()
    assert [(r["trial_id"], r["step"]) for r in rows] == [("a", 2), ("a", 4), ("b", 2)]
    assert rows[0]["param_learning_rate"] == 1e-4 and "pid" not in rows[0]
    assert rows[1]["objective"] is None  # NaN is stored as null
    assert [r["status"] for r in rows] == ["stopped", "stopped", "running"]
    assert rows[1]["stop_reason"].startswith("asha")
    assert not list(tmp_path.glob("*.tmp"))


def test_a_reopened_table_keeps_its_rows_and_every_column(tmp_path):
    table = TrialTable(tmp_path / "trials.parquet")
    table.add_result("a", {"learning_rate": 1e-4}, {"step": 2, "objective": 0.1})
    table.finish("a", "stopped", "asha: below the rung cutoff at step 2")
    table.add_result("b", {"learning_rate": 1e-5}, {"step": 2, "objective": 0.3})
    first = pq.read_table(tmp_path / "trials.parquet").to_pylist()

    reopened = TrialTable(tmp_path / "trials.parquet")  # a resumed sweep
    assert reopened.ended("a") and not reopened.ended("b") and reopened.ended_trials() == {"a"}
    reopened.add_result("b", {"learning_rate": 1e-5}, {"step": 4, "objective": 0.4, "resumed_from_step": 2})
    rows = pq.read_table(tmp_path / "trials.parquet").to_pylist()
    assert rows[0] == {**first[0], "resumed_from_step": None}  # the ended trial's row as it was
    assert rows[2]["resumed_from_step"] == 2  # a column only later rows have is kept
    assert rows[1]["recorded_at"] == first[1]["recorded_at"]
    assert reopened.running_trials() == ["b"]


def test_every_trial_the_driver_saw_is_in_the_table_by_trial(tmp_path):
    table = TrialTable(tmp_path / "trials.parquet")
    table.add_result("a", {}, {"step": 2, "objective": 0.1})
    table.finish("never-reported", "error", "ValueError: bad")  # raised before its first rung
    assert table.by_trial() == [("running", [table.rows[("a", 2)]]), ("error", [])]
    assert table.ended("never-reported")  # an error is an ending: it had its retry and is not resumed


def test_a_trial_that_fails_before_its_first_rung_keeps_a_row_in_the_file(tmp_path):
    """A trial Ray failed at its start was missing from trials.parquet: only its status was known."""
    table = TrialTable(tmp_path / "trials.parquet")
    table.start("late")
    table.finish("late", "error", "worker killed at 9.0 GB resident", {"learning_rate": 1e-4})
    table.add_result("b", {"learning_rate": 1e-5}, {"step": 2, "objective": 0.3})
    table.finish("b", "stopped", "asha", {"learning_rate": 1e-5})  # rows already: none added
    rows = pq.read_table(tmp_path / "trials.parquet").to_pylist()
    assert [(r["trial_id"], r["step"], r["status"]) for r in rows] == [("b", 2, "stopped"), ("late", 0, "error")]
    assert rows[1]["param_learning_rate"] == 1e-4 and rows[1]["objective"] is None
    assert rows[1]["stop_reason"] == "worker killed at 9.0 GB resident" and rows[1]["trial_started_at"] is not None


def test_run_directories_of_one_name_in_one_second_are_all_new(tmp_path, monkeypatch):
    """Two sweeps of one file started in the same second: the second failed with FileExistsError."""
    import time

    from hpo.results.rundir import new_run_dir

    monkeypatch.setattr(time, "strftime", lambda pattern: "20250101-000000")
    made = [new_run_dir(tmp_path / "runs", "tiny").path.name for _ in range(3)]
    assert made == ["tiny-20250101-000000", "tiny-20250101-000000-2", "tiny-20250101-000000-3"]
