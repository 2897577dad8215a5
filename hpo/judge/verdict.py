"""Whether a candidate learned the task and kept its general ability: a claim with its evidence.

The verdict has two parts (docs/judging.md states every rule):

- **the task**: on the held-out test split the candidate is above the base model and, for a
  label task, above the majority class (always answering the most frequent label), each by a
  one-sided paired test on the same rows at ALPHA (McNemar's exact test for 0/1 scores, the
  sign-flip test otherwise). "Above both" rejects only when both tests do (an
  intersection-union test), so a candidate at chance is called learned at most ALPHA of the
  time. A lift over max(base, majority) beyond the noise but below `task.min_lift` is
  "learned, below the lift you asked for".
- **general ability**: held, or regressed: a general probe whose regression is above its limit
  (the same rule every rung is held to), or a benchmark whose paired test finds the candidate
  below the base (one-sided, ALPHA). Each with its figures and its paired test.

Without a test split the task part is read off the validation split the search chose the
best rung on, which flatters it: such a verdict says so, never passes a gate and never
recommends a larger run. A verdict that is not "learned" comes with next steps that fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hpo.search.objective import GENERAL_METRIC, GeneralProbe, domain_floor, domain_lift
from trainers.stages import DomainMetric

ALPHA = 0.05  # the level of each one-sided test
SMALLEST_P = 1e-300  # below it a p-value is printed as a bound, never as 0
SUFFIXES = ("_low", "_high", "_n")  # an estimate's interval and size, beside its value
LEARNED, BELOW_MIN_LIFT, NOT_LEARNED = "learned", "below_min_lift", "not_learned"
HELD, REGRESSED, UNMEASURED = "held", "regressed", "unmeasured"
NOT_LEARNED_STEPS = (
    "train longer or on more domain rows (more steps, a larger budget)",
    "try a larger base model",
    "check the labels and the prompt: each reference answer must be what its prompt asks for, in the form it asks",
)
BELOW_MIN_LIFT_STEPS = (
    "more domain rows or steps, or a larger base model, for a larger lift",
    "or lower task.min_lift, if a smaller lift is worth having",
)
REGRESSED_STEPS = (
    "keep more general data in the training mix (a lower mixing_ratio) or lower the learning rate, then sweep again",
)
VALIDATION_STEPS = ("add data.domain_test (rows the search never scores) and judge on it before any larger run",)


@dataclass(frozen=True)
class Judging:
    """What a verdict holds a candidate to: the smallest lift that matters, and each general probe's limit."""

    min_lift: float = 0.0
    probes: tuple[GeneralProbe, ...] = ()  # general_perplexity first, with objective.max_general_regression


@dataclass(frozen=True)
class GeneralCheck:
    """One general probe or benchmark, base against candidate."""

    name: str
    base: float
    best: float
    regression: float  # a probe's relative regression; a benchmark's drop (base - best)
    limit: float | None  # a probe's limit; None for a benchmark, or a probe without one
    test: Mapping[str, Any] | None  # the paired test (stats.PairedTest as a dict), where scored per example
    regressed: bool

    def line(self) -> str:
        benchmark = self.name.startswith("benchmark_")
        change = f"{self.best - self.base:+.3f}" if benchmark else f"regression {self.regression:+.1%}"
        limit = f", limit {self.limit:.0%}" if self.limit is not None else ""
        text = f"{self.name} {self.base:.4g} -> {self.best:.4g} ({change}{limit})"
        if self.test is not None:
            text += f", {self.test['test']} one-sided {p_said(self.test['p_worse'], 'p(worse)')}"
        if self.regressed:
            text += ": above its limit" if not benchmark else ": below the base beyond the noise"
        return text


@dataclass(frozen=True)
class Verdict:
    status: str  # learned | below_min_lift | not_learned
    general: str  # held | regressed | unmeasured
    split: str  # test | validation
    headline: str
    general_line: str
    reasons: tuple[str, ...]
    next_steps: tuple[str, ...]
    lift: float | None = None  # over max(base, majority class), as the objective measures it
    min_lift: float = 0.0
    regressions: tuple[str, ...] = ()  # the general checks that regressed, each as its line
    unconfirmed_validation_lift: bool = False

    @property
    def learned(self) -> bool:
        return self.status == LEARNED

    @property
    def passed(self) -> bool:
        """Learned on a held-out test split with general ability not regressed: what a gate may ship."""
        return self.learned and self.split == "test" and self.general != REGRESSED

    def to_dict(self) -> dict[str, Any]:
        plain = {**asdict(self), "learned": self.learned, "passed": self.passed}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in plain.items()}


def p_text(p: float) -> str:
    return f"<{SMALLEST_P:.0e}" if p < SMALLEST_P else f"{p:.2g}"


def p_said(p: float, name: str = "p") -> str:
    """`p=0.031`, or `p<1e-300` where a float cannot hold it: never `p=0`."""
    text = p_text(p)
    return name + (text if text.startswith("<") else f"={text}")


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
    return beats_floor(best, metric.name, domain_floor(baseline, metric), metric)


# --- general ability ---------------------------------------------------------------------------------


def general_names(metrics: Mapping[str, Any]) -> list[str]:
    """The general probes' figures among a model's metrics: perplexities and the instruction NLL."""
    return [k for k in metrics if (k.startswith(GENERAL_METRIC) or k == "instruction_nll") and not k.endswith(SUFFIXES)]



def general_checks(
    base: Mapping[str, Any], best: Mapping[str, Any], paired: Mapping[str, Any], probes: Sequence[GeneralProbe]
) -> list[GeneralCheck]:
    """Every general probe both models have a figure for, and every benchmark scored on both."""
    limits = {probe.metric: probe for probe in probes}
    checks = []
    for name in general_names(base):
        if name not in best:
            continue
        probe = limits.get(name, GeneralProbe(name, max_regression=None, nll=name == "instruction_nll"))
        regression = probe.regression(best[name], base[name])
        over = probe.max_regression is not None and not regression <= probe.max_regression
        checks.append(
            GeneralCheck(name, base[name], best[name], regression, probe.max_regression, paired.get(name), over)
        )
    for name, test in paired.items():
        if name.startswith("benchmark_") and name in base and name in best:
            drop = base[name] - best[name]
            checks.append(GeneralCheck(name, base[name], best[name], drop, None, test, test["p_worse"] < ALPHA))
    return checks


def general_part(checks: Sequence[GeneralCheck]) -> tuple[str, str]:
    """(held | regressed | unmeasured, the line that says it)."""
    if not checks:
        return UNMEASURED, "General ability: not measured (no general probe or benchmark was scored)."
    regressed = [c for c in checks if c.regressed]
    if regressed:
        return REGRESSED, "General ability regressed: " + "; ".join(c.line() for c in regressed) + "."
    return HELD, "General ability held: " + "; ".join(c.line() for c in checks) + "."


# --- the task -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The candidate against one reference on the same rows: one-sided, is it above?"""

    against: str  # "the base model", "the majority class"
    test: Mapping[str, Any]

    @property
    def above(self) -> bool:
        return self.test["p_better"] < ALPHA

    def evidence(self) -> str:
        return f"{self.test['test']} {p_said(self.test['p_better'])}"


def comparisons(scores: Mapping[str, Any]) -> list[Comparison]:
    found = [Comparison("the base model", scores["paired"]["domain"])]
    if scores.get("chance"):
        found.append(Comparison("the majority class", scores["chance"]["paired"]))
    return found


def task_headline(
    status: str, who: str, examples: int, found: Sequence[Comparison], lift: float, min_lift: float
) -> str:
    where = f"on {examples} held-out test examples {who}"
    above = [c for c in found if c.above]
    below = [c for c in found if not c.above]
    listed = " and ".join(f"{c.against} ({c.evidence()})" for c in above)
    floor = "max(base, majority class)" if len(found) > 1 else "the base model"
    if status == LEARNED:
        return f"Learned: {where} is above {listed} beyond the noise; lift {lift:+.3f} over {floor}."
    if status == BELOW_MIN_LIFT:
        return (
            f"Learned, below the lift you asked for: {where} is above {listed} beyond the noise, "
            f"but its lift {lift:+.3f} over {floor} is below task.min_lift {min_lift:g}."
        )
    missing = " nor ".join(f"{c.against} ({c.evidence()})" for c in below)
    if above:
        return f"Not learned: {where} is above {listed} but not above {missing} beyond the noise."
    if len(below) > 1:
        return f"Not learned: {where} is above neither {missing} beyond the noise."
    return f"Not learned: {where} is not above {missing} beyond the noise."


def test_lift(scores: Mapping[str, Any], metric: DomainMetric) -> float:
    """The candidate's lift over max(base, majority class) on the test split, as the objective measures it."""
    name, chance = metric.name, scores.get("chance")
    floor = scores["base"][name]
    if chance and metric.higher_is_better:
        floor = max(floor, chance["majority"])
    return domain_lift(scores["best"][name], floor, metric)


def held_out_verdict(
    scores: Mapping[str, Any], metric: DomainMetric, judging: Judging, unconfirmed_validation_lift: bool = False
) -> Verdict:
    """The verdict from the held-out test split: paired one-sided tests against the base and the majority class."""
    name, chance = metric.name, scores.get("chance")
    found = comparisons(scores)
    lift = test_lift(scores, metric)
    if not all(c.above for c in found):
        status = NOT_LEARNED
    else:
        status = LEARNED if lift >= judging.min_lift else BELOW_MIN_LIFT
    reasons = [f"base {interval(scores['base'], name)}, {scores['candidate']} {interval(scores['best'], name)}"]
    for comparison in found:
        t = comparison.test
        reasons.append(
            f"against {comparison.against}: difference {t['difference']:+.3f} [95% {t['low']:+.3f} to {t['high']:+.3f}], "
            f"one-sided {comparison.evidence()}" + ("" if comparison.above else ": not above it beyond the noise")
        )
    if chance:
        reasons.append(
            f"majority class ('{chance['majority_label']}') scores {chance['majority']:.3f}, uniform chance {chance['uniform']:.3f}"
        )
    if judging.min_lift:
        reasons.append(f"lift {lift:+.3f}, task.min_lift {judging.min_lift:g}")
    unconfirmed = unconfirmed_validation_lift and status != LEARNED
    if unconfirmed:
        reasons.append(
            "the validation split showed a lift beyond its interval that the test split does not confirm "
            "(the best was chosen on the validation split, which flatters it)"
        )
    checks = general_checks(scores["base"], scores["best"], scores["paired"], judging.probes)
    general, general_line = general_part(checks)
    headline = task_headline(status, scores["candidate"], scores["examples"], found, lift, judging.min_lift)
    return Verdict(
        status,
        general,
        "test",
        headline,
        general_line,
        tuple(reasons),
        next_steps(status, general, "test"),
        lift,
        judging.min_lift,
        tuple(c.line() for c in checks if c.regressed),
        unconfirmed,
    )


def validation_verdict(
    best: Mapping[str, Any],
    baseline: Mapping[str, float],
    metric: DomainMetric,
    judging: Judging,
    scores: Mapping[str, Any] | None = None,
) -> Verdict:
    """The verdict from the validation split, when there is no test split (it flatters the best).

    General ability comes from the final check's figures when there are some (`scores`, its
    benchmarks), else from the best rung's probes against the baseline's.
    """
    beyond = validation_lift(best, baseline, metric)
    lift = domain_lift(best[metric.name], domain_floor(baseline, metric), metric)
    status = NOT_LEARNED if not beyond else LEARNED if lift >= judging.min_lift else BELOW_MIN_LIFT
    floor = "the base model" + (" and the majority class" if baseline.get("domain_majority") is not None else "")
    said = {LEARNED: "Learned", BELOW_MIN_LIFT: "Learned, below the lift you asked for,", NOT_LEARNED: "Not learned"}
    headline = (
        f"{said[status]} on validation only: the best rung is {'' if beyond else 'not '}above {floor} beyond its "
        f"interval (lift {lift:+.3f}); judged on the split the search chose it on, which flatters it "
        "(add data.domain_test for a held-out check)."
    )
    reasons = [f"base {baseline[metric.name]:.3f}, best {interval(best, metric.name)}"]
    if judging.min_lift:
        reasons.append(f"lift {lift:+.3f}, task.min_lift {judging.min_lift:g}")
    if scores:
        checks = general_checks(scores["base"], scores["best"], scores["paired"], judging.probes)
    else:
        checks = general_checks(baseline, best, {}, judging.probes)
    general, general_line = general_part(checks)
    steps = next_steps(status, general, "validation")
    regressions = tuple(c.line() for c in checks if c.regressed)
    return Verdict(
        status,
        general,
        "validation",
        headline,
        general_line,
        tuple(reasons),
        steps,
        lift,
        judging.min_lift,
        regressions,
    )


def next_steps(status: str, general: str, split: str) -> tuple[str, ...]:
    steps = {LEARNED: (), BELOW_MIN_LIFT: BELOW_MIN_LIFT_STEPS, NOT_LEARNED: NOT_LEARNED_STEPS}[status]
    if general == REGRESSED:
        steps = (*steps, *REGRESSED_STEPS)
    if split == "validation":
        steps = (*VALIDATION_STEPS, *steps)
    return steps


def judge(
    scores: Mapping[str, Any] | None,
    metric: DomainMetric,
    judging: Judging,
    validation: tuple[Mapping[str, Any], Mapping[str, float]] | None = None,
) -> Verdict:
    """The verdict on a candidate.

    `scores` are the final check's figures (best/test_scores.json without its verdict; None when
    there are none); `validation` is (the best rung's metrics, the baseline's) for a sweep's best.
    With a test split the verdict is the test split's; otherwise the validation split's.
    """
    if scores and scores.get("split") == "test":
        unconfirmed = validation is not None and validation_lift(*validation, metric)
        return held_out_verdict(scores, metric, judging, unconfirmed)
    if validation is None:
        raise ValueError("no test split and no validation figures: nothing to judge")
    return validation_verdict(*validation, metric, judging, scores)


def judging_of(config: Mapping[str, Any]) -> Judging:
    """The judging settings of a run's resolved config (spec.yaml's `config`)."""
    objective = config["objective"]
    probes = (
        GeneralProbe(GENERAL_METRIC, 1.0, objective["max_general_regression"]),
        *(GeneralProbe(**probe) for probe in objective.get("general") or ()),
    )
    return Judging(float(config.get("min_lift", 0.0)), probes)
