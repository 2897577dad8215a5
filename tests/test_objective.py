import math

import pytest

from hpo.search.objective import FAILING_OBJECTIVE, score

BASE = {"domain_exact_match": 0.2, "general_perplexity": 20.0}


def test_lift_minus_weighted_regression():
    result = score({"domain_exact_match": 0.8, "general_perplexity": 22.0}, BASE, 2.0, None)
    assert result["domain_lift"] == pytest.approx(0.6)
    assert result["general_regression"] == pytest.approx(0.1)
    assert result["objective"] == pytest.approx(0.6 - 2.0 * 0.1)
    assert result["violation"] == ""


def test_general_improvement_is_not_a_bonus():
    result = score({"domain_exact_match": 0.5, "general_perplexity": 18.0}, BASE, 1.0, None)
    assert result["general_change"] == pytest.approx(-0.1)
    assert result["general_regression"] == 0.0
    assert result["objective"] == pytest.approx(0.3)


def test_regression_over_the_limit_fails_the_rung():
    result = score({"domain_exact_match": 0.9, "general_perplexity": 40.0}, BASE, 1.0, 0.5)
    assert result["objective"] == FAILING_OBJECTIVE
    assert "limit 0.5" in result["violation"]
    assert result["domain_lift"] == pytest.approx(0.7)  # components are kept for the Pareto front


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_metrics_never_reach_the_scheduler(bad):
    result = score({"domain_exact_match": 0.5, "general_perplexity": bad}, BASE, 1.0, None)
    assert result["objective"] == FAILING_OBJECTIVE
    assert result["violation"] == "non-finite metric"
