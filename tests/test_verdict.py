"""Intervals, paired tests and the verdict: known answers, and a near-chance result called what it is."""

import json
import math
import random
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from scipy.stats import binomtest

from benchmarks.judging import SMALL, paired_level
from hpo.judge.evaluate import compare_scores
from hpo.judge.verdict import Judging, judge
from hpo.results.report import recommend
from hpo.search.objective import EXACT_MATCH, GeneralProbe, domain_floor, score
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
    assert test.p_better == pytest.approx(0.5**10)  # exact binomial on 10 discordant pairs, all one way
    assert test.p_worse == 1.0 and test.p_value == pytest.approx(2 * 0.5**10)
    assert 0.0 < test.low <= 0.25 <= test.high
    even = stats.paired_test([1.0, 0.0] * 20, [0.0, 1.0] * 20)  # as many wins as losses
    assert even.p_value == pytest.approx(1.0) and even.low < 0 < even.high
    assert even.p_better == even.p_worse == pytest.approx(0.5 + 0.5 * math.comb(40, 20) / 2**40)


def test_mcnemar_without_discordant_pairs_finds_nothing():
    same = [1.0, 0.0, 1.0, 1.0]
    test = stats.paired_test(same, same)
    assert (test.p_better, test.p_worse, test.p_value) == (1.0, 1.0, 1.0)
    assert (test.difference, test.low, test.high) == (0.0, 0.0, 0.0)


def test_the_sign_flip_test_is_exact_for_few_examples():
    # differences +1, +2, +3, -0.5: of the 16 sign patterns, those whose sum reaches the observed 5.5
    # are the observed one and the one flipping only -0.5 (6.5): 2 of 16
    test = stats.paired_test([0.0, 0.0, 0.0, 0.5], [1.0, 2.0, 3.0, 0.0])
    assert test.test == "sign_flip" and test.p_better == pytest.approx(2 / 16)
    assert test.p_worse == pytest.approx(15 / 16) and test.p_value == pytest.approx(4 / 16)


def test_the_sign_flip_test_sees_a_steady_small_gain_and_not_noise():
    base = [0.2, 0.4, 0.6, 0.8] * 10
    steady = stats.paired_test(base, [b + 0.05 for b in base])
    assert steady.test == "sign_flip" and steady.difference == pytest.approx(0.05)
    assert steady.low == pytest.approx(0.05) and steady.p_better == pytest.approx(1 / (stats.FLIPS + 1))
    noisy = stats.paired_test(base, [b + (0.3 if i % 2 else -0.3) for i, b in enumerate(base)])
    assert noisy.difference == pytest.approx(0.0) and noisy.p_value > 0.5 and noisy.low < 0 < noisy.high


def test_grouped_and_bitwise_sign_flips_agree():
    """Few distinct |differences| are flipped by counting (a binomial draw per size), many by random bits."""
    rng = np.random.default_rng(1)
    grid = np.round(rng.normal(0.03, 0.3, 400), 1)  # 0.1 steps: few sizes
    jittered = grid + rng.uniform(-1e-6, 1e-6, 400)  # every size distinct
    (few, _), (many, _) = stats.sign_flip(grid), stats.sign_flip(jittered)
    assert few == pytest.approx(many, abs=0.01)  # both ~ the one-sided p of the same data


@pytest.mark.parametrize("n", SMALL)
def test_the_paired_test_keeps_its_level_at_small_n(n):
    """The paired bootstrap's p-value, used before, called 8.9% of exchangeable pairs different at n=15."""
    draws = 200
    rejected = paired_level(n, draws, seed=n)
    assert binomtest(rejected, draws, 0.05, alternative="greater").pvalue > 0.01, rejected / draws


def test_perplexity_interval_brackets_the_value():
    estimate = stats.perplexity([10.0, 14.0, 9.0, 30.0], [5, 5, 5, 10])
    assert estimate.value == pytest.approx(math.exp(63 / 25)) and estimate.n == 4
    assert estimate.low <= estimate.value <= estimate.high


# --- the verdict ---------------------------------------------------------------------------------------

EXACT = "domain_exact_match"


def scores(base: list[float], best: list[float], majority: list[float] | None, **general) -> dict:
    """The final check's figures from per-row scores, through the code a sweep uses."""
    chance = None
    if majority is not None:
        chance = {
            "majority_label": "yes",
            "majority": sum(majority) / len(majority),
            "majority_scores": majority,
            "uniform": 0.5,
        }
    figures = []
    for index, per_row in enumerate((base, best)):  # `general`: a probe's (base, best) figures
        metrics = {EXACT: sum(per_row) / len(per_row), **{name: values[index] for name, values in general.items()}}
        figures.append((metrics, {"domain": per_row}, {}))
    return compare_scores(EXACT_MATCH, "the best recipe", figures[0], figures[1], len(base), chance)


def with_benchmark(found: dict, base: list[float], best: list[float]) -> dict:
    found["base"]["benchmark_quiz"], found["best"]["benchmark_quiz"] = sum(base) / len(base), sum(best) / len(best)
    found["paired"]["benchmark_quiz"] = vars(stats.paired_test(base, best))
    return found


def rows(hits: int, n: int) -> list[float]:
    return [1.0] * hits + [0.0] * (n - hits)


def test_far_above_the_base_but_not_the_majority_class_is_not_learned_and_says_which():
    # a balanced binary task: the base chatters (0.0), the best mostly says the majority label: 0.54 against 0.53
    n = 200
    majority = rows(106, n)
    best = majority[:]  # right where the majority label is right ...
    best[100:106] = [0.0] * 6  # ... save 6 of those rows
    best[106:114] = [1.0] * 8  # and right on 8 more
    verdict = judge(scores([0.0] * n, best, majority), EXACT_MATCH, Judging())
    assert verdict.status == "not_learned" and not verdict.passed
    assert "is above the base model (mcnemar p=" in verdict.headline
    assert "but not above the majority class (mcnemar p=0.4" in verdict.headline
    assert "p=0 " not in verdict.headline and "p=0)" not in verdict.headline
    advice = recommend(float("inf"), 0.0, 0.25, verdict=verdict.to_dict())
    assert advice.kind == "not-learned" and "full-rank" not in advice.advice and "RFT" not in advice.advice


def test_p_values_too_small_for_a_float_print_as_a_bound():
    n = 2200
    verdict = judge(scores([0.0] * n, [1.0] * n, rows(n // 3, n)), EXACT_MATCH, Judging())
    assert verdict.learned and "mcnemar p<1e-300" in verdict.headline and "p=0" not in verdict.headline


def test_a_clear_result_is_learned_and_recommends_the_next_step():
    n = 150
    verdict = judge(scores([0.0] * n, rows(144, n), rows(51, n)), EXACT_MATCH, Judging())
    assert verdict.learned and verdict.passed and verdict.headline.startswith("Learned") and not verdict.next_steps
    assert verdict.lift == pytest.approx(0.96 - 0.34)
    assert recommend(float("inf"), 0.05, 0.25, verdict=verdict.to_dict()).kind == "strong"


def test_a_borderline_lift_at_large_n_is_real_but_below_the_lift_asked_for():
    # 0.555 against a majority class of 0.530 on 2,000 rows: beyond the noise, but only 2.5 points
    n = 2000
    majority = rows(1060, n)
    best = majority[:]
    best[1000:1060] = [0.0] * 60
    best[1060:1170] = [1.0] * 110  # 1,110 right: 0.555
    found = scores([0.0] * n, best, majority)
    assert judge(found, EXACT_MATCH, Judging()).learned  # with no minimum, a real lift is a lift
    verdict = judge(found, EXACT_MATCH, Judging(min_lift=0.05))
    assert verdict.status == "below_min_lift" and not verdict.learned and not verdict.passed
    assert verdict.headline.startswith("Learned, below the lift you asked for")
    assert "+0.025" in verdict.headline and "task.min_lift 0.05" in verdict.headline
    assert recommend(0.05, 0.0, 0.25, verdict=verdict.to_dict()).kind == "below-min-lift"


def test_a_significant_benchmark_drop_is_a_general_regression():
    n = 150
    found = with_benchmark(scores([0.0] * n, rows(144, n), rows(51, n)), rows(120, 200), rows(90, 200))
    verdict = judge(found, EXACT_MATCH, Judging())
    assert verdict.learned and verdict.general == "regressed" and not verdict.passed
    assert verdict.general_line.startswith("General ability regressed: benchmark_quiz 0.6 -> 0.45 (-0.150)")
    assert "below the base beyond the noise" in verdict.general_line
    advice = recommend(float("inf"), 0.0, 0.25, verdict=verdict.to_dict())
    assert advice.kind == "regressed" and "general data" in advice.advice and "full-rank" not in advice.advice


def test_a_benchmark_within_the_noise_and_a_probe_within_its_limit_hold():
    n = 150
    quiz = rows(100, 200)
    quiz[90:100], quiz[100:107] = [0.0] * 10, [1.0] * 7  # 10 questions lost, 7 gained: a drop within the noise
    found = with_benchmark(
        scores([0.0] * n, rows(144, n), rows(51, n), general_perplexity=(10.0, 11.0)), rows(100, 200), quiz
    )
    verdict = judge(found, EXACT_MATCH, Judging(probes=(GeneralProbe("general_perplexity", 1.0, 0.25),)))
    assert verdict.general == "held" and verdict.passed
    assert "general_perplexity 10 -> 11 (regression +10.0%, limit 25%)" in verdict.general_line


def test_a_probe_over_its_limit_is_a_general_regression():
    n = 150
    found = scores([0.0] * n, rows(144, n), rows(51, n), general_perplexity=(10.0, 14.0))
    verdict = judge(found, EXACT_MATCH, Judging(probes=(GeneralProbe("general_perplexity", 1.0, 0.25),)))
    assert verdict.general == "regressed" and "regression +40.0%, limit 25%): above its limit" in verdict.general_line


def test_without_a_test_split_the_verdict_reads_validation_never_passes_and_asks_for_one():
    baseline = {EXACT: 0.1, "domain_majority": 0.4, "general_perplexity": 10.0}
    near = {EXACT: 0.5, f"{EXACT}_low": 0.35, f"{EXACT}_high": 0.65, "general_perplexity": 10.5}
    verdict = judge(None, EXACT_MATCH, Judging(), (near, baseline))
    assert not verdict.learned and verdict.split == "validation" and "domain_test" in verdict.headline
    clear = {EXACT: 0.9, f"{EXACT}_low": 0.8, f"{EXACT}_high": 0.95, "general_perplexity": 10.5}
    verdict = judge(None, EXACT_MATCH, Judging(), (clear, baseline))
    assert verdict.learned and not verdict.passed and verdict.general == "held"
    assert verdict.headline.startswith("Learned on validation only")
    advice = recommend(float("inf"), 0.05, 0.25, verdict=verdict.to_dict())
    assert advice.kind == "validation-only" and "domain_test" in advice.advice
    assert "full-rank" not in advice.advice and "RFT" not in advice.advice


def test_a_validation_lift_the_test_split_does_not_confirm_is_pointed_out():
    n = 200
    found = scores([0.0] * n, rows(100, n), rows(110, n))
    validation = ({EXACT: 0.8, f"{EXACT}_low": 0.7, f"{EXACT}_high": 0.9}, {EXACT: 0.0, "domain_majority": 0.5})
    verdict = judge(found, EXACT_MATCH, Judging(), validation)
    assert verdict.unconfirmed_validation_lift and any("does not confirm" in r for r in verdict.reasons)
    assert not any("fit its eval split" in r for r in verdict.reasons)  # a cause the figures cannot show


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


def run_hpo(*args: str, cwd, code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == code, done.stderr[-3000:]
    return done


def rewrite_rows(path, change) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(change(row)) + "\n" for row in rows))


def short_sweep(tiny, trials: int, max_steps: int = 16) -> None:
    document = yaml.safe_load((tiny / "sweep.yaml").read_text())
    document["budget"] = {"trials": trials, "concurrency": min(trials, 2)}
    document["scheduler"] = {"rung_interval": 4, "max_steps": max_steps, "reduction_factor": 2}
    (tiny / "sweep.yaml").write_text(yaml.safe_dump(document))


def test_a_sweep_on_random_labels_ends_not_learned_and_recommends_nothing_bigger(tiny):
    rng = random.Random(0)
    labels = ("animal", "plant", "tool")
    for split in ("train", "eval", "test"):  # nothing left to learn: every answer is a coin toss
        rewrite_rows(tiny / "data" / f"domain_{split}.jsonl", lambda row: {**row, "completion": rng.choice(labels)})
    short_sweep(tiny, trials=1, max_steps=8)  # any recipe: there is nothing to learn
    done = run_hpo("sweep", "sweep.yaml", "--quiet", "--require-learned", cwd=tiny, code=1)
    (run_dir,) = (tiny / "runs").iterdir()
    verdict = json.loads((run_dir / "best" / "test_scores.json").read_text())["verdict"]
    assert verdict["status"] == "not_learned" and not verdict["passed"] and verdict["headline"] in done.stdout
    assert "Not learned" in done.stdout and "next: " in done.stdout
    assert done.stderr.strip().endswith(f"--require-learned: {verdict['headline']}")
    assert (run_dir / "best" / "recipe.yaml").is_file()  # everything a sweep writes is written all the same
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
    short_sweep(tiny, trials=3)  # trained far enough that answers score between 0 and 1 (a sign-flip test)
    done = run_hpo("sweep", "sweep.yaml", "--quiet", cwd=tiny)
    (run_dir,) = (tiny / "runs").iterdir()
    rows = pq.read_table(run_dir / "trials.parquet").to_pylist()
    assert all(
        0.0 <= r["domain_token_f1_low"] <= r["domain_token_f1"] <= r["domain_token_f1_high"] <= 1.0 for r in rows
    )
    assert all("domain_parse_rate" not in r or r["domain_parse_rate"] is None for r in rows)  # no labels, no parse rate
    scores = json.loads((run_dir / "best" / "test_scores.json").read_text())
    assert scores["metric"] == "domain_token_f1" and scores["paired"]["domain"]["test"] == "sign_flip"
    assert "chance" not in scores and "confusion" not in scores
    assert "paired domain: best - base" in done.stdout
