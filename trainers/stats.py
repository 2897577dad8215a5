"""Intervals and paired tests for probe figures: how sure a score is, and whether two models differ.

- a rate (a share of 0/1 scores): Wilson's 95% interval (scipy);
- a mean of continuous scores: a 95% percentile bootstrap interval (scipy);
- a perplexity or a mean NLL per token (a ratio of summed NLL to token count): the same bootstrap
  over passages;
- base against best on the same examples: McNemar's exact test for 0/1 scores (scipy's
  binomial test on the discordant pairs), the paired sign-flip (randomization) test for
  continuous ones, each with one-sided p-values for either direction; the difference's 95%
  interval is a paired bootstrap.

Every resampling uses a fixed seed, so a figure is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000  # bootstrap resamples of an interval
FLIPS = 9999  # random sign patterns of the sign-flip test (its p-value's Monte Carlo error at 0.05: 0.002)
FLIP_BATCH = 1000  # sign patterns held in memory at once
ROWS_PER_VALUE = 8  # rows per distinct value above which resampling draws counts per value, not rows
EXACT_ROWS = 16  # the sign-flip test enumerates every sign pattern up to this many rows (65,536)
DIGITS = 12
SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A figure with its sample size and 95% interval."""

    value: float
    n: int
    low: float
    high: float

    def columns(self, name: str) -> dict[str, float]:
        """The estimate as rung metrics: `name`, `name_low`, `name_high`, `name_n`."""
        return {name: self.value, f"{name}_low": self.low, f"{name}_high": self.high, f"{name}_n": float(self.n)}


def is_binary(values: Sequence[float]) -> bool:
    data = np.asarray(values, dtype=float)
    return bool(np.all((data == 0.0) | (data == 1.0)))


def rate(values: Sequence[float]) -> Estimate:
    """The share of 1s among 0/1 scores, with Wilson's interval."""
    n, hits = len(values), int(sum(values))
    if n == 0:
        return Estimate(math.nan, 0, math.nan, math.nan)
    interval = stats.binomtest(hits, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Estimate(hits / n, n, float(interval.low), float(interval.high))


def mean(values: Sequence[float]) -> Estimate:
    """The mean of continuous scores, with a percentile bootstrap interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Estimate(math.nan, 0, math.nan, math.nan)
    if data.size == 1 or np.all(data == data[0]):
        return Estimate(float(data.mean()), int(data.size), float(data[0]), float(data[0]))
    result = stats.bootstrap(
        (data,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES, method="percentile", random_state=SEED
    )
    interval = result.confidence_interval
    return Estimate(float(data.mean()), int(data.size), float(interval.low), float(interval.high))


def score_estimate(values: Sequence[float]) -> Estimate:
    """Wilson for 0/1 scores, the bootstrap for anything else."""
    return rate(values) if is_binary(values) else mean(values)


def token_mean(nll_sums: Sequence[float], token_counts: Sequence[int]) -> Estimate:
    """Total NLL over total tokens (nats per token), with a bootstrap interval over the passages (or pairs)."""
    nll, tokens = np.asarray(nll_sums, dtype=float), np.asarray(token_counts, dtype=float)
    if tokens.sum() == 0:
        return Estimate(math.nan, 0, math.nan, math.nan)
    value = float(nll.sum() / tokens.sum())
    if nll.size < 2:
        return Estimate(value, int(nll.size), value, value)
    result = stats.bootstrap(
        (nll, tokens),
        lambda a, b, axis=-1: a.sum(axis=axis) / b.sum(axis=axis),
        paired=True,
        vectorized=True,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        random_state=SEED,
    )
    interval = result.confidence_interval
    return Estimate(value, int(nll.size), float(interval.low), float(interval.high))


def perplexity(nll_sums: Sequence[float], token_counts: Sequence[int]) -> Estimate:
    """exp(total NLL / total tokens) over passages; the interval is the NLL's, exponentiated."""
    nll = token_mean(nll_sums, token_counts)
    return Estimate(math.exp(nll.value), nll.n, math.exp(nll.low), math.exp(nll.high))


@dataclass(frozen=True)
class PairedTest:
    """best minus base on the same examples (higher scores are better): the mean difference, its 95%
    interval, and the test's p-values: one-sided for "best is better" and for "best is worse", and
    two-sided (twice the smaller one, at most 1)."""

    test: str  # mcnemar | sign_flip
    n: int
    difference: float
    low: float
    high: float
    p_value: float
    p_better: float
    p_worse: float


def mcnemar(differences: np.ndarray) -> tuple[float, float]:
    """McNemar's exact one-sided p-values (best better, best worse) from 0/1 score differences: among
    the examples exactly one model gets right, is the best's share above (below) one half? The
    binomial tails (scipy), as scipy's binomtest computes them for a one-sided alternative."""
    only_best, discordant = int(np.sum(differences > 0)), int(np.sum(differences != 0))
    if discordant == 0:
        return 1.0, 1.0
    better = stats.binom.sf(only_best - 1, discordant, 0.5)
    worse = stats.binom.cdf(only_best, discordant, 0.5)
    return float(better), float(worse)


def few(values: np.ndarray, data: np.ndarray) -> bool:
    """Whether `data` takes few enough distinct `values` that drawing counts per value beats drawing per row."""
    return values.size * ROWS_PER_VALUE <= data.size


@lru_cache(maxsize=EXACT_ROWS + 1)
def every_sign_pattern(n: int) -> np.ndarray:
    """The 2**n patterns of n signs (+1/-1), one per row (made once per n; at most 8 MB)."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2.0 - 1.0


def sign_flip(differences: Sequence[float], resamples: int = FLIPS) -> tuple[float, float]:
    """One-sided p-values (mean difference above 0, below 0) of the paired sign-flip test.

    Under the null the two models are exchangeable on each example, so every difference is as
    likely with either sign. Exact (every sign pattern) up to EXACT_ROWS rows, else `resamples`
    random patterns with the observed one counted in, (k + 1) / (resamples + 1), which keeps
    the level. Where the sizes |d| take few values the flips of each size are counted by a
    binomial draw instead: the same distribution at a cost of the number of sizes, not n.
    Written out in numpy: scipy's permutation_test computes the same but took two minutes at
    n=5,000, where this takes about a second.
    """
    d = np.asarray(differences, dtype=float)
    observed = d.sum()
    tolerance = 1e-9 * max(1.0, float(np.abs(d).sum()))  # sums equal up to float rounding count as ties
    if d.size <= EXACT_ROWS:
        sums = every_sign_pattern(d.size) @ d
        return float(np.mean(sums >= observed - tolerance)), float(np.mean(sums <= observed + tolerance))
    rng = np.random.default_rng(SEED)
    sizes, counts = np.unique(np.abs(d), return_counts=True)
    above = below = 0
    for start in range(0, resamples, FLIP_BATCH):
        batch = min(FLIP_BATCH, resamples - start)
        if few(sizes, d):  # scores on a grid (JSON fields, short answers)
            sums = (2.0 * rng.binomial(counts, 0.5, size=(batch, sizes.size)) - counts) @ sizes
        else:
            sums = flipped_sums(d, batch, rng)
        above += int(np.sum(sums >= observed - tolerance))
        below += int(np.sum(sums <= observed + tolerance))
    return (above + 1) / (resamples + 1), (below + 1) / (resamples + 1)


def flipped_sums(d: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` sums of the differences, each difference's sign flipped by a fair coin (8 coins a random byte)."""
    random_bytes = rng.integers(0, 256, size=(count, (d.size + 7) // 8), dtype=np.uint8)
    kept = np.unpackbits(random_bytes, axis=1, count=d.size)  # 1: the difference keeps its sign
    return 2.0 * (kept @ d) - d.sum()


def difference_interval(differences: np.ndarray) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the mean difference (resamples of the examples).

    Where the differences take few values (0/1 scores give at most three) a resample is drawn as
    how often each value recurs, from a multinomial: the same distribution as resampling rows,
    at a cost of the number of values instead of n.
    """
    values, counts = np.unique(differences, return_counts=True)
    if values.size == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(SEED)
    if few(values, differences):
        means = rng.multinomial(differences.size, counts / differences.size, size=RESAMPLES) @ values / differences.size
    else:
        means = differences[rng.integers(0, differences.size, size=(RESAMPLES, differences.size))].mean(axis=1)
    low, high = np.percentile(means, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def paired_test(base: Sequence[float], best: Sequence[float], resamples: int = FLIPS) -> PairedTest:
    """McNemar's exact test for 0/1 scores, the sign-flip test otherwise; a paired bootstrap interval.

    McNemar's test is the sign-flip test's exact distribution when every difference is -1, 0 or 1.
    """
    if len(base) != len(best) or len(base) == 0:
        raise ValueError(f"paired scores must be two non-empty lists of one length, got {len(base)} and {len(best)}")
    # rounded far below any score's precision, so that scores on a grid (0.1, 0.2, ...) give equal
    # differences that group as equal, not 0.30000000000000004 next to 0.3
    differences = np.round(np.asarray(best, dtype=float) - np.asarray(base, dtype=float), DIGITS)
    low, high = difference_interval(differences)
    if is_binary(base) and is_binary(best):
        test, (better, worse) = "mcnemar", mcnemar(differences)
    else:
        test, (better, worse) = "sign_flip", sign_flip(differences, resamples)
    two_sided = min(1.0, 2.0 * min(better, worse))
    return PairedTest(test, len(base), float(differences.mean()), low, high, two_sided, better, worse)
