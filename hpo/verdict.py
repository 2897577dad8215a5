"""Whether the best recipe learned the task: a claim with its evidence.

"Learned" means the best recipe is above the base model and, for a label task, above the
majority class (always answering the most frequent label), each beyond the noise:

- above the base: the paired test on the held-out test split (McNemar's exact test for 0/1
  scores, a paired bootstrap otherwise) gives p < ALPHA and a 95% interval of the
  difference above 0;
- above the majority class: the lower end of the best's 95% interval (Wilson for rates, a
  bootstrap for means) is above the majority-class score on the same split.

Without a test split the verdict is read off the validation split the search chose the best
rung on, which flatters it, and says so. A validation lift beyond its interval that the test
split does not confirm is flagged: the search fit its eval split. A verdict of "not learned"
comes with next steps that fit, and never with a bigger run that builds on the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from trainers.stages import DomainMetric

ALPHA = 0.05
NOT_LEARNED_STEPS = (
    "train longer or on more domain rows (more steps, a larger budget)",
    "try a larger base model",
    "check the labels and the prompt: each reference answer must be what its prompt asks for, in the form it asks",
)


@dataclass(frozen=True)
class Verdict:
    learned: bool
    split: str  # test | validation
    headline: str
    reasons: tuple[str, ...]
    next_steps: tuple[str, ...]
    fits_eval_split: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": list(self.reasons), "next_steps": list(self.next_steps)}


def interval(metrics: Mapping[str, Any], name: str) -> str:
    value, low, high, n = (metrics.get(f"{name}{s}") for s in ("", "_low", "_high", "_n"))
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [95% {low:.3f}-{high:.3f}, n={int(n or 0)}]"


def beats_floor(metrics: Mapping[str, Any], name: str, floor: float, metric: DomainMetric) -> bool:
    """Whether the figure's 95% interval lies entirely on the better side of `floor`."""
    if metric.higher_is_better:
        return metrics.get(f"{name}_low", metrics[name]) > floor
    return metrics.get(f"{name}_high", metrics[name]) < floor


def validation_lift(best: Mapping[str, Any], baseline: Mapping[str, float], metric: DomainMetric) -> bool:
    """Whether the best rung's validation figure beats the base (and the majority class) beyond its interval."""
    floor = baseline[metric.name]
    if metric.higher_is_better and baseline.get("domain_majority") is not None:
        floor = max(floor, baseline["domain_majority"])
    return beats_floor(best, metric.name, floor, metric)


def test_verdict(scores: Mapping[str, Any], metric: DomainMetric, fits_eval_split: bool) -> Verdict:
    """The verdict from the held-out test split: the paired test against the base, the interval against chance."""
    name, paired, chance = metric.name, scores["paired_test"], scores.get("chance")
    above_base = paired["p_value"] < ALPHA and paired["low"] > 0
    reasons = [
        f"base {interval(scores['base'], name)}, best {interval(scores['best'], name)}",
        f"best - base {paired['difference']:+.3f} [95% {paired['low']:+.3f} to {paired['high']:+.3f}], "
        f"{paired['test']} p={paired['p_value']:.2g}" + ("" if above_base else ": not above the base beyond the noise"),
    ]
    above_chance = True
    if chance:
        above_chance = beats_floor(scores["best"], name, chance["majority"], metric)
        reasons.append(
            f"majority class ('{chance['majority_label']}') scores {chance['majority']:.3f}, uniform chance "
            f"{chance['uniform']:.3f}" + ("" if above_chance else ": the best is not above the majority class")
        )
    learned = above_base and above_chance
    if fits_eval_split and not learned:
        reasons.append("the validation split showed a lift the test split does not confirm: the search fit its eval split")
    what = "the base model" + (" and the majority class" if chance else "")
    headline = (
        f"Learned: on {scores['examples']} held-out test examples the best recipe is above {what} beyond the noise."
        if learned
        else f"Not learned: on {scores['examples']} held-out test examples the best recipe is not above {what} "
        "beyond the noise."
    )
    return Verdict(learned, "test", headline, tuple(reasons), () if learned else NOT_LEARNED_STEPS, fits_eval_split)


def validation_verdict(best: Mapping[str, Any], baseline: Mapping[str, float], metric: DomainMetric) -> Verdict:
    """The verdict from the validation split, when there is no test split (it flatters the best)."""
    learned = validation_lift(best, baseline, metric)
    floor = "the base model" + (" and the majority class" if baseline.get("domain_majority") is not None else "")
    caveat = "judged on the validation split the search chose it on (add data.domain_test for a held-out check)"
    headline = ("Learned" if learned else "Not learned") + f" on validation: the best rung is {'' if learned else 'not '}"
    headline += f"above {floor} beyond its interval; {caveat}."
    reasons = (f"base {baseline[metric.name]:.3f}, best {interval(best, metric.name)}",)
    return Verdict(learned, "validation", headline, reasons, () if learned else NOT_LEARNED_STEPS)


def judge(
    test_scores: Mapping[str, Any] | None,
    best: Mapping[str, Any],
    baseline: Mapping[str, float],
    metric: DomainMetric,
) -> Verdict:
    """The verdict for a sweep's best rung (`best`: its validation metrics) against its baseline."""
    if test_scores and "paired_test" in test_scores:
        return test_verdict(test_scores, metric, fits_eval_split=validation_lift(best, baseline, metric))
    return validation_verdict(best, baseline, metric)
