"""The composite objective, a pure function of trial metrics and baseline metrics.

    objective = domain_lift - general_weight * general_regression

`domain_lift` is the gain in strict exact match over the base model; `general_regression`
is the relative rise of general-text perplexity over the base model (an improvement
counts as 0, never as a bonus). A rung over a limit, or with a metric that is not a
finite number, gets FAILING_OBJECTIVE so ASHA and the searcher always see a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

FAILING_OBJECTIVE = -10.0
DOMAIN_METRIC = "domain_exact_match"
GENERAL_METRIC = "general_perplexity"


def score(
    metrics: Mapping[str, float],
    baseline: Mapping[str, float],
    general_weight: float,
    max_general_regression: float | None,
) -> dict[str, float | str]:
    """Objective, its components, and `violation` (empty when the rung passes)."""
    domain_lift = metrics[DOMAIN_METRIC] - baseline[DOMAIN_METRIC]
    general_change = metrics[GENERAL_METRIC] / baseline[GENERAL_METRIC] - 1.0
    general_regression = max(0.0, general_change)
    objective = domain_lift - general_weight * general_regression
    violation = ""
    if not all(math.isfinite(v) for v in (domain_lift, general_change)):
        violation = "non-finite metric"
    elif max_general_regression is not None and general_regression > max_general_regression:
        violation = f"general regression {general_regression:.3f} > limit {max_general_regression:g}"
    return {
        "objective": FAILING_OBJECTIVE if violation else objective,
        "domain_lift": domain_lift,
        "general_change": general_change,
        "general_regression": general_regression,
        "violation": violation,
    }
