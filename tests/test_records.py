import math

import pyarrow.parquet as pq

from hpo.records import TrialTable


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
