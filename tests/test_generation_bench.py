"""The generation benchmark on the tiny model: both paths give the same answers; batches by length pad less."""

import json

from benchmarks.generation import main


def test_batches_by_length_give_the_same_answers_with_fewer_padded_positions(tiny, tmp_path):
    out = tmp_path / "out"
    assert main(["--sweep", str(tiny / "sweep.yaml"), "--repeats", "1", "--batch", "4", "--out", str(out)]) == 0
    rows = {row["variant"]: row for row in json.loads((out / "results.json").read_text())["rows"]}
    before, after = rows["in order, 4 a batch"], rows["by length, 4 a batch"]
    assert before["answers_differing"] == after["answers_differing"] == 0 and before["speedup"] == 1.0
    assert 0 < after["prompt_positions"] <= before["prompt_positions"]
    assert after["generated_tokens_per_s"] > 0 and after["decode_positions"] > 0
    assert "| by length, 4 a batch |" in (out / "results.md").read_text()
