"""Intervals, paired tests and the verdict: known answers, and a near-chance result called what it is."""

import json
import math
import random
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from hpo.objective import EXACT_MATCH, GeneralProbe, domain_floor, score
from hpo.report import recommend
from hpo.verdict import judge
from trainers import stats


def test_wilson_interval_matches_the_textbook_values():
    none = stats.rate([0.0] * 10)
    assert none.value == 0.0 and none.low == 0.0 and none.high == pytest.approx(0.2775, abs=1e-4)
    half = stats.rate([1.0] * 50 + [0.0] * 50)
    assert (half.low, half.high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert half.columns("x") == {"x": 0.5, "x_low": half.low, "x_high": half.high, "x_n": 100.0}


def test_mcnemar_counts_only_the_examples_where_the_models_disagree():
    base = [0.0] * 10 + [1.0] * 30
    best = [1.0] * 10 + [1.0] * 30  # best right on 10 more, never worse
    test = stats.paired_test(base, best)
    assert test.test == "mcnemar" and test.n == 40 and test.difference == pytest.approx(0.25)
    assert test.p_value == pytest.approx(2 * 0.5**10)  # exact binomial on 10 discordant pairs, all one way
    assert 0.0 < test.low <= 0.25 <= test.high
    even = stats.paired_test([1.0, 0.0] * 20, [0.0, 1.0] * 20)  # as many wins as losses
    assert even.p_value == pytest.approx(1.0) and even.low < 0 < even.high


def test_the_paired_bootstrap_sees_a_steady_small_gain_and_not_noise():
    base = [0.2, 0.4, 0.6, 0.8] * 10
    steady = stats.paired_test(base, [b + 0.05 for b in base])
    assert steady.test == "paired_bootstrap" and steady.difference == pytest.approx(0.05)
    assert steady.low == pytest.approx(0.05) and steady.p_value < 0.001  # every example gains the same
    noisy = stats.paired_test(base, [b + (0.3 if i % 2 else -0.3) for i, b in enumerate(base)])
    assert noisy.difference == pytest.approx(0.0) and noisy.p_value > 0.5 and noisy.low < 0 < noisy.high


def test_perplexity_interval_brackets_the_value():
    estimate = stats.perplexity([10.0, 14.0, 9.0, 30.0], [5, 5, 5, 10])
    assert estimate.value == pytest.approx(math.exp(63 / 25)) and estimate.n == 4
    assert estimate.low <= estimate.value <= estimate.high


def scores(base: float, best: float, n: int, majority: float, paired: stats.PairedTest) -> dict:
    return {
        "split": "test",
        "examples": n,
        "metric": "domain_exact_match",
        "base": stats.rate([1.0] * round(base * n) + [0.0] * (n - round(base * n))).columns("domain_exact_match"),
        "best": stats.rate([1.0] * round(best * n) + [0.0] * (n - round(best * n))).columns("domain_exact_match"),
        "paired_test": vars(paired),
        "chance": {"majority_label": "yes", "majority": majority, "uniform": 0.5},
    }


def test_a_near_chance_result_is_not_learned_even_though_it_beats_the_base():
    # a balanced binary task: the base chatters (0.0), the best says a label at 0.555, the majority scores 0.51
    n = 200
    base, best = [0.0] * n, [1.0] * 111 + [0.0] * 89
    found = scores(0.0, 0.555, n, 0.51, stats.paired_test(base, best))
    validation = {"domain_exact_match": 0.633, "domain_exact_match_low": 0.51, "domain_exact_match_high": 0.74}
    verdict = judge(found, validation, {"domain_exact_match": 0.0, "domain_majority": 0.5}, EXACT_MATCH)
    assert not verdict.learned and verdict.split == "test"
    assert verdict.headline.startswith("Not learned") and any("not above the majority class" in r for r in verdict.reasons)
    assert verdict.fits_eval_split and any("fit its eval split" in r for r in verdict.reasons)
    advice = recommend(float("inf"), 0.0, 0.25, verdict=verdict.to_dict())
    assert advice.kind == "not-learned"
    assert "full-rank" not in advice.advice and "RFT" not in advice.advice


def test_a_clear_result_is_learned():
    n = 150
    base, best = [0.0] * n, [1.0] * 144 + [0.0] * 6
    found = scores(0.0, 0.96, n, 0.34, stats.paired_test(base, best))
    validation = {"domain_exact_match": 0.9, "domain_exact_match_low": 0.8, "domain_exact_match_high": 0.95}
    verdict = judge(found, validation, {"domain_exact_match": 0.0, "domain_majority": 0.35}, EXACT_MATCH)
    assert verdict.learned and verdict.headline.startswith("Learned") and not verdict.next_steps
    assert recommend(float("inf"), 0.05, 0.25, verdict=verdict.to_dict()).kind == "strong"


def test_without_a_test_split_the_verdict_reads_validation_and_says_so():
    baseline = {"domain_exact_match": 0.1, "domain_majority": 0.4}
    near = {"domain_exact_match": 0.5, "domain_exact_match_low": 0.35, "domain_exact_match_high": 0.65}
    verdict = judge(None, near, baseline, EXACT_MATCH)
    assert not verdict.learned and verdict.split == "validation" and "domain_test" in verdict.headline


def test_the_objective_measures_lift_above_the_majority_class_and_weighs_every_general_probe():
    baseline = {"domain_exact_match": 0.0, "domain_majority": 0.5, "general_perplexity": 10.0, "instruction_nll": 2.0}
    assert domain_floor(baseline, EXACT_MATCH) == 0.5
    metrics = {"domain_exact_match": 0.8, "general_perplexity": 11.0, "instruction_nll": 2.1}
    result = score(metrics, baseline, 1.0, 0.25, general=(GeneralProbe("instruction_nll", 0.5, 0.05, nll=True),))
    instruction = math.exp(0.1) - 1  # the response perplexity's relative rise
    assert result["domain_lift"] == pytest.approx(0.3)  # above the majority class, not above the base's 0
    assert result["general_regression"] == pytest.approx(0.1 + 0.5 * instruction)
    assert result["regression_instruction_nll"] == pytest.approx(instruction)
    assert result["violation"] == f"instruction_nll regression {instruction:.3f} > limit 0.05"
    assert score(metrics, {**baseline, "domain_majority": None}, 1.0, 0.25)["domain_lift"] == pytest.approx(0.8)


# --- whole sweeps on the tiny model ------------------------------------------------------------------


def run_hpo(*args: str, cwd) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def rewrite_rows(path, change) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(change(row)) + "\n" for row in rows))


def short_sweep(tiny, **changes) -> None:
    document = yaml.safe_load((tiny / "sweep.yaml").read_text())
    document.update(budget={"trials": 3, "concurrency": 2}, **changes)
    (tiny / "sweep.yaml").write_text(yaml.safe_dump(document))


def test_a_sweep_on_random_labels_ends_not_learned_and_recommends_nothing_bigger(tiny):
    rng = random.Random(0)
    labels = ("animal", "plant", "tool")
    for split in ("train", "eval", "test"):  # nothing left to learn: every answer is a coin toss
        rewrite_rows(tiny / "data" / f"domain_{split}.jsonl", lambda row: {**row, "completion": rng.choice(labels)})
    short_sweep(tiny)
    done = run_hpo("sweep", "sweep.yaml", "--quiet", cwd=tiny)
    (run_dir,) = (tiny / "runs").iterdir()
    verdict = json.loads((run_dir / "best" / "test_scores.json").read_text())["verdict"]
    assert not verdict["learned"] and verdict["headline"] in done.stdout
    assert "Not learned" in done.stdout and "next: " in done.stdout
    run_hpo("report", str(run_dir), cwd=tiny)
    summary = (run_dir / "report" / "summary.md").read_text()
    recommendation = summary.split("## Recommendation", 1)[1].split("##", 1)[0]
    assert "Not learned" in recommendation
    assert "full-rank" not in recommendation and "RFT" not in recommendation


def test_an_open_ended_task_without_labels_sweeps_on_token_f1(tiny):
    for split in ("train", "eval", "test"):  # answers are sentences now: no label set, a continuous score
        rewrite_rows(tiny / "data" / f"domain_{split}.jsonl", lambda row: {**row, "completion": row["prompt"][-20:]})
    document = yaml.safe_load((tiny / "sweep.yaml").read_text())
    document["task"] = {"metric": "token_f1"}
    document["probes"]["max_new_tokens"] = 12
    (tiny / "sweep.yaml").write_text(yaml.safe_dump(document))
    short_sweep(tiny)
    done = run_hpo("sweep", "sweep.yaml", "--quiet", cwd=tiny)
    (run_dir,) = (tiny / "runs").iterdir()
    rows = pq.read_table(run_dir / "trials.parquet").to_pylist()
    assert all(0.0 <= r["domain_token_f1_low"] <= r["domain_token_f1"] <= r["domain_token_f1_high"] <= 1.0 for r in rows)
    assert all("domain_parse_rate" not in r or r["domain_parse_rate"] is None for r in rows)  # no labels, no parse rate
    scores = json.loads((run_dir / "best" / "test_scores.json").read_text())
    assert scores["metric"] == "domain_token_f1" and scores["paired_test"]["test"] == "paired_bootstrap"
    assert "chance" not in scores and "confusion" not in scores
    assert "paired domain: best - base" in done.stdout
