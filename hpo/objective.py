"""The composite objective, a pure function of trial metrics and baseline metrics.

    objective = domain_lift - general_weight * general_regression

`domain_lift` is the stage's domain gain over the starting model, on the stage's domain
metric (trainers.stages): a difference for rates and rewards (sft: strict exact match;
rft: mean reward on held-out prompts, in the reward's own units); for a metric where lower
is better (cpt: held-out domain perplexity), the relative drop `1 - value / base` (0.5 when
perplexity halves; mirrors `general_regression`, which is a relative rise).

`general_regression` is the relative rise of general-text perplexity over the base model
(an improvement counts as 0, never as a bonus). A rung over a limit (general regression,
or for RFT the KL to the reference), or with a metric that is not a finite number, gets
FAILING_OBJECTIVE so ASHA and the searcher always see a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from trainers.stages import SFT, DomainMetric

FAILING_OBJECTIVE = -10.0
GENERAL_METRIC = "general_perplexity"
KL_METRIC = "train_kl"


def domain_lift(value: float, base: float, metric: DomainMetric) -> float:
    """A difference for rates and rewards; a relative drop for perplexity-like metrics."""
    return value - base if metric.higher_is_better else 1.0 - value / base


def kl_violation(metrics: Mapping[str, float], max_kl: float | None) -> str:
    """Why the rung's KL to the reference is over the limit (e.g. `kl 0.812 > limit 0.5`), or empty."""
    kl = metrics.get(KL_METRIC)
    if max_kl is None or kl is None or not math.isfinite(kl) or kl <= max_kl:
        return ""
    return f"kl {kl:.3g} > limit {max_kl:g}"


def score(
    metrics: Mapping[str, float],
    baseline: Mapping[str, float],
    general_weight: float,
    max_general_regression: float | None,
    *,
    domain: DomainMetric = SFT.metric,
    max_kl: float | None = None,
) -> dict[str, float | str]:
    """Objective, its components, and `violation` (empty when the rung passes)."""
    lift = domain_lift(metrics[domain.name], baseline[domain.name], domain)
    general_change = metrics[GENERAL_METRIC] / baseline[GENERAL_METRIC] - 1.0
    general_regression = max(0.0, general_change)
    objective = lift - general_weight * general_regression
    checked = [lift, general_change] + ([metrics[KL_METRIC]] if KL_METRIC in metrics else [])
    violation = ""
    if not all(math.isfinite(v) for v in checked):
        violation = "non-finite metric"
    elif max_general_regression is not None and general_regression > max_general_regression:
        violation = f"general regression {general_regression:.3f} > limit {max_general_regression:g}"
    else:
        violation = kl_violation(metrics, max_kl)
    return {
        "objective": FAILING_OBJECTIVE if violation else objective,
        "domain_lift": lift,
        "general_change": general_change,
        "general_regression": general_regression,
        "violation": violation,
    }
