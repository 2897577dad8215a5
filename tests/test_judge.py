"""`hpo judge`: the sweep's own held-out check for answers made elsewhere and for a model trained anywhere."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from hpo.cli import main


def split_rows(tiny_source: Path) -> list[dict]:
    return [json.loads(line) for line in (tiny_source / "data" / "domain_test.jsonl").read_text().splitlines()]


def judge_answers(tmp_path: Path, tiny_source: Path, candidate: list[str], *extra: str) -> int:
    rows = split_rows(tiny_source)
    (tmp_path / "base.txt").write_text("I think it is a word\n" * len(rows))  # a chatty base: never a label
    (tmp_path / "candidate.jsonl").write_text("".join(json.dumps({"completion": a}) + "\n" for a in candidate))
    test = str(tiny_source / "data" / "domain_test.jsonl")
    base, answers = str(tmp_path / "base.txt"), str(tmp_path / "candidate.jsonl")
    return main(
        ["judge", "--test", test, "--base", base, "--candidate", answers, "--labels", "animal", "plant", "tool", *extra]
    )


def test_answers_that_are_right_are_learned_and_exit_0(tmp_path, tiny_source, capsys):
    references = [row["completion"] for row in split_rows(tiny_source)]
    assert judge_answers(tmp_path, tiny_source, [f" {r}\n" for r in references]) == 0
    out = capsys.readouterr().out
    assert "Learned: on 20 held-out test examples the answers in" in out
    assert "General ability: not measured" in out
    assert "paired domain: best - majority class" in out
    assert "true \\ predicted" in out  # the confusion matrix


def test_answers_that_always_say_the_majority_label_are_not_learned_and_exit_1(tmp_path, tiny_source, capsys):
    references = [row["completion"] for row in split_rows(tiny_source)]
    majority = Counter(references).most_common(1)[0][0]
    assert judge_answers(tmp_path, tiny_source, [majority] * len(references), "--json") == 1
    scores = json.loads(capsys.readouterr().out)
    verdict = scores["verdict"]
    assert verdict["status"] == "not_learned" and not verdict["passed"] and verdict["general"] == "unmeasured"
    assert "not above the majority class" in verdict["headline"] and "above the base model" in verdict["headline"]
    assert scores["chance"]["paired"]["p_better"] == 1.0  # no row where the two disagree
    assert scores["best"]["domain_exact_match"] == pytest.approx(scores["chance"]["majority"])


def test_a_lift_below_min_lift_exits_1(tmp_path, tiny_source, capsys):
    references = [row["completion"] for row in split_rows(tiny_source)]
    assert judge_answers(tmp_path, tiny_source, references, "--min-lift", "0.9", "--json") == 1
    verdict = json.loads(capsys.readouterr().out)["verdict"]
    assert verdict["status"] == "below_min_lift" and verdict["min_lift"] == 0.9


def test_an_adapter_is_judged_by_the_runs_own_held_out_check(tiny_run, tmp_path, capsys):
    """The best adapter, judged as any adapter, gives the figures and the verdict the sweep wrote; its
    answers, written out and judged as answers, give the same domain figures and task verdict."""
    adapter = tiny_run / "best" / "adapter"
    code = main(["judge", str(tiny_run), "--adapter", str(adapter), "--answers-out", str(tmp_path), "--json"])
    scores = json.loads(capsys.readouterr().out)
    written = json.loads((tiny_run / "best" / "test_scores.json").read_text())
    assert code == (0 if scores["verdict"]["passed"] else 1)
    assert scores["candidate"] == f"the adapter {adapter}"
    for model in ("base", "best"):
        for name in ("domain_exact_match", "general_perplexity", "benchmark_tiny_choice"):
            assert scores[model][name] == pytest.approx(written[model][name]), (model, name)
    assert scores["paired"]["domain"] == pytest.approx(written["paired"]["domain"])
    assert scores["chance"]["majority_label"] == written["chance"]["majority_label"]
    assert scores["chance"]["paired"] == pytest.approx(written["chance"]["paired"])
    assert scores["verdict"]["status"] == written["verdict"]["status"]
    assert scores["verdict"]["general"] == written["verdict"]["general"]

    test = yaml.safe_load((tiny_run / "spec.yaml").read_text())["config"]["recipe"]["data"]["domain_test"]
    answers = ["--base", str(tmp_path / "base.jsonl"), "--candidate", str(tmp_path / "candidate.jsonl")]
    main(["judge", "--test", test, *answers, "--labels", "animal", "plant", "tool", "--json"])
    again = json.loads(capsys.readouterr().out)
    assert again["paired"]["domain"] == pytest.approx(scores["paired"]["domain"])
    assert again["chance"]["paired"] == pytest.approx(scores["chance"]["paired"])
    assert again["verdict"]["status"] == scores["verdict"]["status"] and again["verdict"]["general"] == "unmeasured"
