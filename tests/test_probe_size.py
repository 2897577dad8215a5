"""The probe-size benchmark on a finished tiny sweep: a table per size and a recommended size."""

import json

from benchmarks.probe_size import main


def test_probe_size_compares_each_size_with_ten_times_the_passages(tiny_run, tmp_path):
    corpus = tiny_run.parent.parent / "data" / "general_text.jsonl"
    assert main(["--run", str(tiny_run), "--corpus", str(corpus), "--sizes", "2,3", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert [r["passages"] for r in result["rows"]] == [2, 3]
    assert [r["reference_passages"] for r in result["rows"]] == [20, 30]
    for row in result["rows"]:
        assert row["difference"] == row["in_loop"] - row["reference"] and row["draw_spread"] >= 0
    assert result["seconds_per_passage"] > 0 and "| passages |" in (tmp_path / "results.md").read_text()
