"""How often the verdict calls a candidate at chance "learned", and how often it finds a true lift.

Every draw goes through the verdict's own code: per-row scores, each model's figure
(trainers.stats), the paired tests against the base and the majority class
(hpo.judge.evaluate.compare_scores) and the verdict (hpo.judge.verdict.judge). Three tasks:

- `label`: a two-label task whose most frequent label is `share` of the rows; the majority
  class answers the test split's most frequent reference. The base chatters (never a label),
  so only the majority class stands between a candidate and "learned": the hardest case.
- `label_base`: the same, with a base model as good as the majority class.
- `continuous`: scores on a 0.1 grid (a token F1 or JSON-field share), base and candidate
  noisy readings of each row's difficulty; no label set.

A candidate at chance scores what it must beat (the majority share; the base's expected
score): the boundary of the null, where a false "learned" is most likely. A true lift adds
`lift` to that.

    python -m benchmarks.judging [--draws 2000] [--seed 0]

prints a Markdown table of the share of draws called learned (with its 95% interval), by the
verdict (`after`) and, on the same draws, by the rule it replaced (`before`: `unpaired_learned`),
and the paired test's type-I error on continuous scores at small n.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hpo.judge.evaluate import Scored, compare_scores
from hpo.judge.verdict import Judging, judge
from trainers import stats
from trainers.stages import DomainMetric

EXACT = DomainMetric("domain_exact_match")
SCORE = DomainMetric("domain_score")
SIZES = (200, 1000, 5000)
POWER_SIZE = 2000
SMALL = (15, 30)  # sizes where the paired bootstrap's p-value, used before, did not hold its level
LIFT = 0.05
NO_MIN_LIFT = Judging()


def scored(name: str, scores: np.ndarray) -> Scored:
    """A model's figure, its 95% interval's lower end (the rule the verdict replaced tests it) and per-row scores."""
    low = stats.rate(scores).low if stats.is_binary(scores) else mean_low(scores)
    metrics = {name: float(scores.mean()), f"{name}_low": low, f"{name}_n": float(scores.size)}
    return metrics, {"domain": scores.tolist()}, {}


def mean_low(scores: np.ndarray) -> float:
    """The lower end of a mean's 95% interval: the normal one, as a stand-in for stats.mean's bootstrap at
    these sizes (n >= 200), which would cost a second per draw."""
    return float(scores.mean() - 1.96 * scores.std(ddof=1) / np.sqrt(scores.size))


def label_draw(rng: np.random.Generator, n: int, share: float, lift: float, base_at_chance: bool) -> dict:
    """One test split of a two-label task and the figures of its base and candidate."""
    is_a = rng.random(n) < share  # each row's reference: label A, else B
    majority_label = "A" if np.sum(is_a) >= n / 2 else "B"
    majority = (is_a if majority_label == "A" else ~is_a).astype(float)
    candidate = (rng.random(n) < share + lift).astype(float)  # right on each row at this rate, whatever the row
    base = (rng.random(n) < share).astype(float) if base_at_chance else np.zeros(n)
    chance = {
        "majority_label": majority_label,
        "majority": majority.mean(),
        "majority_scores": majority.tolist(),
        "uniform": 0.5,
    }
    return compare_scores(EXACT, "the candidate", scored(EXACT.name, base), scored(EXACT.name, candidate), n, chance)


def continuous_draw(rng: np.random.Generator, n: int, lift: float) -> dict:
    """Scores on a 0.1 grid: each row's difficulty, read with independent noise for base and candidate."""
    difficulty = rng.beta(5, 5, n)

    def reading(shift: float) -> np.ndarray:
        return np.clip(np.round(difficulty + shift + rng.normal(0, 0.15, n), 1), 0.0, 1.0)

    return compare_scores(
        SCORE, "the candidate", scored(SCORE.name, reading(0.0)), scored(SCORE.name, reading(lift)), n, None
    )


@dataclass(frozen=True)
class Task:
    name: str
    draw: Callable[[np.random.Generator, int, float], dict]
    metric: DomainMetric


TASKS = {
    "label 0.5": Task("label 0.5", lambda rng, n, lift: label_draw(rng, n, 0.5, lift, False), EXACT),
    "label 0.7": Task("label 0.7", lambda rng, n, lift: label_draw(rng, n, 0.7, lift, False), EXACT),
    "label 0.7, base at chance": Task(
        "label 0.7, base at chance", lambda rng, n, lift: label_draw(rng, n, 0.7, lift, True), EXACT
    ),
    "continuous": Task("continuous", continuous_draw, SCORE),
}


def unpaired_learned(scores: dict, metric: DomainMetric) -> bool:
    """The rule the verdict replaced (hpo/judge/verdict.py's test_verdict before the paired chance check): above the
    base by the paired test's two-sided p < 0.05 with its 95% interval above 0, and, for a label task, the
    lower end of the candidate's own 95% interval (Wilson) above the majority class's score on the same rows,
    as if that score were a constant. (Its paired bootstrap p on continuous scores is below 0.05 exactly
    when the bootstrap's 95% interval is above 0, which this reads off the bootstrap interval of today's test.)"""
    paired, chance = scores["paired"]["domain"], scores.get("chance")
    binary = paired["test"] == "mcnemar"
    above_base = (paired["p_value"] < 0.05 or not binary) and paired["low"] > 0
    above_chance = not chance or scores["best"][f"{metric.name}_low"] > chance["majority"]
    return above_base and above_chance


def learned_counts(
    task: Task, n: int, lift: float, draws: int, seed: int, judging: Judging = NO_MIN_LIFT
) -> tuple[int, int]:
    """How many of `draws` test splits of size n the verdict calls learned, and the rule it replaced."""
    rng = np.random.default_rng([seed, n, round(lift * 1000)])
    after = before = 0
    for _ in range(draws):
        scores = task.draw(rng, n, lift)
        after += judge(scores, task.metric, judging).learned
        before += unpaired_learned(scores, task.metric)
    return after, before


def learned_count(task: Task, n: int, lift: float, draws: int, seed: int, judging: Judging = NO_MIN_LIFT) -> int:
    """How many of `draws` test splits of size n the verdict calls learned."""
    return learned_counts(task, n, lift, draws, seed, judging)[0]


def exchangeable_pair(rng: np.random.Generator, n: int) -> tuple[list[float], list[float]]:
    """Two models' scores on n rows, each a noisy reading of the row's difficulty: no real difference."""
    difficulty = rng.beta(2, 3, n)
    base, best = (np.clip(difficulty + rng.normal(0, 0.2, n), 0, 1) for _ in range(2))
    return base.tolist(), best.tolist()


def paired_level(n: int, draws: int, seed: int) -> int:
    """How many of `draws` exchangeable pairs the paired test calls different (two-sided p < 0.05)."""
    rng = np.random.default_rng([seed, n])
    return sum(stats.paired_test(*exchangeable_pair(rng, n)).p_value < 0.05 for _ in range(draws))


def share_text(count: int, draws: int) -> str:
    interval = stats.rate([1.0] * count + [0.0] * (draws - count))
    return f"{count / draws:.1%} [{interval.low:.1%}-{interval.high:.1%}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    header = [f"n={n}, at chance" for n in SIZES] + [f"n={POWER_SIZE}, true lift {LIFT}"]
    print("| task | rule | " + " | ".join(header) + " |")
    print("|---|---|" + "---|" * len(header))
    for task in TASKS.values():
        counts = [learned_counts(task, n, 0.0, args.draws, args.seed) for n in SIZES]
        counts.append(learned_counts(task, POWER_SIZE, LIFT, args.draws, args.seed))
        for rule, which in (("after", 0), ("before", 1)):
            cells = [share_text(count[which], args.draws) for count in counts]
            print(f"| {task.name} | {rule} | " + " | ".join(cells) + " |", flush=True)
    print("\n| paired test on continuous scores, no real difference | " + " | ".join(f"n={n}" for n in SMALL) + " |")
    print("|---|" + "---|" * len(SMALL))
    cells = [share_text(paired_level(n, args.draws, args.seed), args.draws) for n in SMALL]
    print("| two-sided p < 0.05 | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
