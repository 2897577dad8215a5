"""The split check: a held-out split that repeats training rows is refused or flagged before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.config.splits import MOSTLY_SHARED, overlaps, split_problems, split_summary
from hpo.config.sweep_file import load_sweep
from trainers.stages import STAGES

FIELDS = ("prompt", "completion")


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def row(i: int, label: str = "a") -> dict:
    return {"prompt": f"Question {i}: what is it?", "completion": label}


def test_the_same_file_twice_is_an_error(tmp_path):
    train = write(tmp_path / "train.jsonl", [row(i) for i in range(10)])
    errors, warnings = split_problems({"domain_train": train, "domain_eval": train}, FIELDS)
    assert warnings == []
    assert errors == [
        (
            "data.domain_eval",
            f"is the same file as data.domain_train ({train}): a held-out split must hold rows "
            "training never saw (give it a file of its own)",
        )
    ]


def test_a_copy_of_the_training_rows_is_an_error_with_its_counts(tmp_path):
    train = write(tmp_path / "train.jsonl", [row(i) for i in range(10)])
    # 4 exact copies, 3 that differ only in case, spacing and punctuation, 1 new row
    test_rows = [row(i) for i in range(4)] + [
        {"prompt": f"QUESTION  {i} what is it", "completion": "A"} for i in (4, 5, 6)
    ]
    test = write(tmp_path / "test.jsonl", test_rows + [row(99)])
    (found,) = overlaps({"domain_train": train, "domain_test": test}, FIELDS)
    assert (found.split, found.other, found.rows, found.exact, found.normalised) == (
        "domain_test",
        "domain_train",
        8,
        4,
        3,
    )
    assert found.shared > MOSTLY_SHARED * found.rows and found.is_error
    errors, _ = split_problems({"domain_train": train, "domain_test": test}, FIELDS)
    assert errors[0][1].startswith("7 of 8 rows (88%) are also in data.domain_train (4 exactly, 3 after folding case")


def test_a_few_shared_rows_are_a_warning(tmp_path):
    train = write(tmp_path / "train.jsonl", [row(i) for i in range(10)])
    evaluation = write(tmp_path / "eval.jsonl", [row(i) for i in range(20, 30)])
    test = write(tmp_path / "test.jsonl", [row(0), row(25)] + [row(i) for i in range(40, 48)])
    paths = {"domain_train": train, "domain_eval": evaluation, "domain_test": test}
    errors, warnings = split_problems(paths, FIELDS)
    assert errors == []
    assert [key for key, _ in warnings] == ["data.domain_test", "data.domain_test"]
    assert warnings[0][1] == (
        "1 of 10 rows (10%) are also in data.domain_train (1 exactly, 0 after folding case, punctuation and spaces): "
        "they flatter its score (remove them from one of the files)"
    )
    assert "data.domain_eval" in warnings[1][1]


def test_the_same_prompt_with_another_answer_is_not_a_repeat(tmp_path):
    train = write(tmp_path / "train.jsonl", [row(i, "a") for i in range(5)])
    test = write(tmp_path / "test.jsonl", [row(i, "b") for i in range(5)])
    assert overlaps({"domain_train": train, "domain_test": test}, FIELDS) == []


def test_the_summary_gives_each_splits_size_and_labels(tmp_path):
    train = write(tmp_path / "train.jsonl", [row(i, "a") for i in range(3)] + [row(9, "b")])
    assert split_summary({"domain_train": train, "domain_eval": None}, ("a", "b", "c")) == [
        "data.domain_train: 4 rows; labels a 3 (75%), b 1 (25%), c 0 (0%)"
    ]
    assert split_summary({"domain_train": train}, ()) == ["data.domain_train: 4 rows"]


def validate(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hpo", "validate", "sweep.yaml"], cwd=folder, capture_output=True, text=True
    )


def test_validate_refuses_a_test_split_that_is_the_training_file(tiny):
    sweep = tiny / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace("data/domain_test.jsonl", "data/domain_train.jsonl"))
    done = validate(tiny)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"error: sweep.yaml: data.domain_test: is the same file as data.domain_train ({tiny / 'data' / 'domain_train.jsonl'}): "
        "a held-out split must hold rows training never saw (give it a file of its own)"
    ]


def test_validate_prints_each_splits_size_and_labels_and_warns_of_shared_rows(tiny):
    train = (tiny / "data" / "domain_train.jsonl").read_text().splitlines()
    test = tiny / "data" / "domain_test.jsonl"
    test.write_text(
        "\n".join(test.read_text().splitlines()[1:] + train[:1]) + "\n"
    )  # one training row in the test split
    done = validate(tiny)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    sizes = [line.strip() for line in lines if line.strip().startswith("data.domain_")]
    assert [line.split(";")[0] for line in sizes] == [
        "data.domain_train: 120 rows",
        "data.domain_eval: 20 rows",
        "data.domain_test: 20 rows",
    ]
    assert all("labels animal" in line and "plant" in line and "tool" in line for line in sizes)
    (warning,) = [line for line in lines if line.startswith("warning:") and "also in" in line]
    assert warning == (
        f"warning: {tiny / 'sweep.yaml'}: data.domain_test: 1 of 20 rows (5%) are also in data.domain_train "
        "(1 exactly, 0 after folding case, punctuation and spaces): they flatter its score (remove them from one of the files)"
    )


@pytest.mark.parametrize("name", ["sweep.yaml", "sweep_cpt.yaml", "sweep_rft.yaml", "sweep_sft_full.yaml"])
def test_the_tiny_examples_splits_share_no_row(tiny_source, name):
    """The tiny sweep files' splits are cut from one draw of distinct rows (the pipeline's stages use the same files)."""
    config = load_sweep(tiny_source / name)
    paths = {key: getattr(config.recipe.data, key) for key in ("domain_train", "domain_eval", "domain_test")}
    assert overlaps(paths, STAGES[config.recipe.stage].row_fields) == []
