"""Intervals and paired tests for probe figures: how sure a score is, and whether two models differ.

- a rate (a share of 0/1 scores): Wilson's 95% interval (scipy);
- a mean of continuous scores: a 95% percentile bootstrap interval (scipy);
- a perplexity or a mean NLL per token (a ratio of summed NLL to token count): the same bootstrap
  over passages;
- base against best on the same examples: McNemar's exact test for 0/1 scores (scipy's
  binomial test on the discordant pairs), a paired bootstrap for continuous ones.

The paired bootstrap is written out (a few lines of numpy): scipy's bootstrap gives intervals,
not the test's p-value. Every resampling uses a fixed seed, so a figure is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
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
    return all(v in (0.0, 1.0) for v in values)


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
    """best minus base on the same examples: the mean difference, its 95% interval and a two-sided p-value."""

    test: str  # mcnemar | paired_bootstrap
    n: int
    difference: float
    low: float
    high: float
    p_value: float


def mcnemar(base: Sequence[float], best: Sequence[float]) -> float:
    """McNemar's exact p-value: among examples exactly one model gets right, is either side more likely?"""
    only_best = sum(1 for a, b in zip(base, best) if b > a)
    only_base = sum(1 for a, b in zip(base, best) if a > b)
    if only_best + only_base == 0:
        return 1.0
    return float(stats.binomtest(only_best, only_best + only_base, 0.5).pvalue)


def bootstrap_differences(base: Sequence[float], best: Sequence[float]) -> np.ndarray:
    """Mean differences (best - base) over resamples of the example indices, both models resampled together."""
    differences = np.asarray(best, dtype=float) - np.asarray(base, dtype=float)
    rng = np.random.default_rng(SEED)
    indices = rng.integers(0, differences.size, size=(RESAMPLES, differences.size))
    return differences[indices].mean(axis=1)


def paired_test(base: Sequence[float], best: Sequence[float]) -> PairedTest:
    """McNemar for 0/1 scores, a paired bootstrap otherwise; the interval is always the paired bootstrap's."""
    if len(base) != len(best) or not base:
        raise ValueError(f"paired scores must be two non-empty lists of one length, got {len(base)} and {len(best)}")
    resampled = bootstrap_differences(base, best)
    difference = float(np.mean(best) - np.mean(base))
    low, high = np.percentile(resampled, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    if is_binary(base) and is_binary(best):
        return PairedTest("mcnemar", len(base), difference, float(low), float(high), mcnemar(base, best))
    share_at_most_zero = float(np.mean(resampled <= 0.0))
    share_at_least_zero = float(np.mean(resampled >= 0.0))
    p_value = min(1.0, 2.0 * min(share_at_most_zero, share_at_least_zero))
    return PairedTest("paired_bootstrap", len(base), difference, float(low), float(high), max(p_value, 1.0 / RESAMPLES))
