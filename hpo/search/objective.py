"""The composite objective, a pure function of trial metrics and baseline metrics.

    objective = domain_lift - general_weight * general_regression

`domain_lift` is the gain on the recipe's domain metric (trainers.stages) over what a recipe
must beat: the starting model and, for a label task, the majority class too (always answering
the most frequent label: `domain_majority` in the baseline), so learning the answer format
alone is no lift. It is a difference for scores and rewards; for a metric where lower is
better (held-out domain perplexity) the relative drop `1 - value / base` (0.5 when
perplexity halves; mirrors a general regression, which is a relative rise).

`general_regression` is the weighted sum of each general probe's relative regression over
the base model: a perplexity's relative rise (`general_perplexity` at weight 1 by default,
and every corpus of `general.corpora` at its own weight), or for an NLL (the instruction
probe) the rise of its perplexity, `exp(nll - base nll) - 1`. An improvement counts as 0,
never as a bonus. A rung with a probe over its own limit, over the KL limit (RFT), or with a
metric that is not a finite number gets FAILING_OBJECTIVE, so ASHA and the searcher always
see a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trainers.shared import Flag
from trainers.stages import DomainMetric

FAILING_OBJECTIVE = -10.0
GENERAL_METRIC = "general_perplexity"
KL_METRIC = "train_kl"
MAJORITY_METRIC = "domain_majority"  # the baseline's majority-class score on the eval split (label tasks)
EXACT_MATCH = DomainMetric("domain_exact_match")


@dataclass(frozen=True)
class GeneralProbe:
    """A general probe in the regression: its rung metric, weight and limit (None: no limit)."""

    metric: str
    weight: float = 1.0
    max_regression: float | None = None
    nll: bool = False  # an NLL in nats: its regression is its perplexity's relative rise

    def regression(self, value: float, base: float) -> float:
        change = math.exp(value - base) - 1.0 if self.nll else value / base - 1.0
        return 0.0 if change <= 0 else change  # NaN stays NaN: the rung fails as non-finite


def domain_floor(baseline: Mapping[str, float], metric: DomainMetric) -> float:
    """What a recipe must beat on `metric`: the base model and, where known, the majority class."""
    base = baseline[metric.name]
    majority = baseline.get(MAJORITY_METRIC)
    return max(base, majority) if metric.higher_is_better and majority is not None else base


def domain_lift(value: float, base: float, metric: DomainMetric) -> float:
    """A difference for rates and rewards; a relative drop for perplexity-like metrics."""
    return value - base if metric.higher_is_better else 1.0 - value / base


def kl_violation(metrics: Mapping[str, float], max_kl: float | None) -> str:
    """Why the rung's KL to the reference is over the limit (e.g. `kl 0.812 > limit 0.5`), or empty."""
    kl = metrics.get(KL_METRIC)
    if max_kl is None or kl is None or not math.isfinite(kl) or kl <= max_kl:
        return ""
    return f"kl {kl:.3g} > limit {max_kl:g}"


def general_violation(probe: GeneralProbe, regression: float) -> str:
    if probe.max_regression is None or regression <= probe.max_regression:
        return ""
    what = "general regression" if probe.metric == GENERAL_METRIC else f"{probe.metric} regression"
    return f"{what} {regression:.3f} > limit {probe.max_regression:g}"


def score(
    metrics: Mapping[str, float],
    baseline: Mapping[str, float],
    general_weight: float,
    max_general_regression: float | None,
    *,
    domain: DomainMetric = EXACT_MATCH,
    max_kl: float | None = None,
    general: Sequence[GeneralProbe] = (),
) -> dict[str, float | str]:
    """Objective, its components, and `violation` (empty when the rung passes).

    `general` are the probes beyond `general_perplexity` (which weighs 1 and has the limit
    `max_general_regression`).
    """
    probes = (GeneralProbe(GENERAL_METRIC, 1.0, max_general_regression), *general)
    lift = domain_lift(metrics[domain.name], domain_floor(baseline, domain), domain)
    general_change = metrics[GENERAL_METRIC] / baseline[GENERAL_METRIC] - 1.0
    regressions = {p.metric: p.regression(metrics[p.metric], baseline[p.metric]) for p in probes}
    general_regression = sum(p.weight * regressions[p.metric] for p in probes)
    objective = lift - general_weight * general_regression
    checked = [lift, general_change, *regressions.values()] + ([metrics[KL_METRIC]] if KL_METRIC in metrics else [])
    violation = ""
    if not all(math.isfinite(v) for v in checked):
        violation = "non-finite metric"
    else:
        found = (general_violation(p, regressions[p.metric]) for p in probes)
        violation = next((v for v in found if v), "") or kl_violation(metrics, max_kl)
    return {
        "objective": FAILING_OBJECTIVE if violation else objective,
        "domain_lift": lift,
        "general_change": general_change,
        "general_regression": general_regression,
        **{f"regression_{name}": value for name, value in regressions.items() if name != GENERAL_METRIC},
        Flag.VIOLATION: violation,
    }
