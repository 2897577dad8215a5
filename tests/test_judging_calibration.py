"""How often the verdict is wrong, by simulation through its own code (benchmarks/judging.py), fixed seeds.

A candidate at chance must be called learned at most 5% of the time: the simulated share may
sit above 5% only by the simulation's own noise (a one-sided binomial test at 1% on the
draws). A true 5-point lift at n = 2,000 must be found at least 80% of the time. The same
criterion fails the unpaired check the verdict used before. benchmarks/README.md has the
figures from 1,000 draws each, before and after.
"""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from benchmarks.judging import LIFT, POWER_SIZE, SIZES, TASKS, learned_count, learned_counts

# Draws per task and size, sized to the time each draw takes (a continuous draw's sign-flip test is the
# costliest) and to how near 5% each task sits (a balanced task's majority class is hard to beat by luck).
AT_CHANCE_DRAWS = {"label 0.5": 150, "label 0.7": 300, "continuous": 120}
POWER_DRAWS = 80
SEED = 20261207


def at_most_five_percent(count: int, draws: int) -> bool:
    return binomtest(count, draws, 0.05, alternative="greater").pvalue > 0.01


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("task", list(AT_CHANCE_DRAWS))
def test_a_candidate_at_chance_is_rarely_called_learned(task, n):
    draws = AT_CHANCE_DRAWS[task]
    count = learned_count(TASKS[task], n, 0.0, draws, SEED)
    assert at_most_five_percent(count, draws), f"{task}, n={n}: {count / draws:.1%} called learned"


@pytest.mark.parametrize("task", list(AT_CHANCE_DRAWS))
def test_a_true_five_point_lift_is_found(task):
    count = learned_count(TASKS[task], POWER_SIZE, LIFT, POWER_DRAWS, SEED)
    assert count / POWER_DRAWS >= 0.8, f"{task}: a {LIFT} lift found in {count / POWER_DRAWS:.0%} of draws"


def test_the_unpaired_majority_check_it_replaces_fails_this_test():
    """The rule the verdict used before (benchmarks.judging.unpaired_learned: the best's Wilson lower bound above
    the majority class's score on the same rows, as if that score were a constant), on the same draws as the
    verdict: at n=1,000 with a majority class of 0.7 it calls a candidate at chance learned too often."""
    draws = 400
    after, before = learned_counts(TASKS["label 0.7"], 1000, 0.0, draws, SEED + 1)
    assert not at_most_five_percent(before, draws), before / draws
    assert at_most_five_percent(after, draws), after / draws
