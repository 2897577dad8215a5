"""What a sweep prints about its figures: metric lines with intervals, the held-out check and the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.judge.verdict import p_text
from trainers.shared import INTERVAL_SUFFIXES

# Figures worth a printed line: every probe figure (each comes with its interval: the stage's domain probe, the
# general probes, the benchmarks), and the domain's chance figures.
SHOWN_PREFIXES = ("domain_",)
NOT_FIGURES = ("domain_lift",)  # an objective component, shown with the objective


def figure_value(metrics: Mapping[str, Any], name: str, sample_size: bool = False) -> str:
    """`0.9000 [0.795-0.953]`: a figure, its 95% interval where the metrics hold one and, when asked, its
    sample size (` n=60`). Every figure the sweep prints or the report shows is written this way."""
    value, low, high, n = (metrics.get(f"{name}{s}") for s in ("", *INTERVAL_SUFFIXES))
    if low is None or high is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.3f}-{high:.3f}]" + (f" n={int(n)}" if sample_size and n else "")


def figure(metrics: Mapping[str, Any], name: str) -> str:
    """`name 0.9000 [0.795-0.953]`: the figure's name and value, and its 95% interval where the metrics hold one."""
    return f"{name} {figure_value(metrics, name)}"


def format_metrics(title: str, metrics: Mapping[str, Any]) -> str:
    names = [
        k
        for k, v in metrics.items()
        if (k.startswith(SHOWN_PREFIXES) or f"{k}_low" in metrics)
        and not k.endswith(INTERVAL_SUFFIXES)
        and k not in NOT_FIGURES
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    shown = (["objective"] if metrics.get("objective") is not None else []) + names
    return f"{title}: " + ", ".join(figure(metrics, name) for name in shown)


def paired_line(key: str, test: Mapping[str, Any], against: str = "base") -> str:
    """`paired domain: best - base +0.9600 [+0.927 to +0.987], mcnemar n=150, one-sided p 9e-44 better, 1 worse`."""
    return (
        f"paired {key}: best - {against} {test['difference']:+.4f} [{test['low']:+.3f} to {test['high']:+.3f}], "
        f"{test['test']} n={test['n']}, one-sided p {p_text(test['p_better'])} better, {p_text(test['p_worse'])} worse"
    )


def held_out_lines(scores: Mapping[str, Any]) -> list[str]:
    """The final check: base and best (test split, general probes, benchmarks), the paired tests, chance, the verdict."""
    where = f"test, {scores['examples']} examples" if scores["split"] else "general probes and benchmarks"
    lines = [format_metrics(f"base ({where})", scores["base"]), format_metrics(f"best ({where})", scores["best"])]
    lines += [paired_line(key, test) for key, test in scores["paired"].items()]
    if scores.get("chance"):
        lines.append(paired_line("domain", scores["chance"]["paired"], against="majority class"))
    lines += verdict_lines(scores["verdict"])
    return lines


def verdict_lines(verdict: Mapping[str, Any]) -> list[str]:
    """The verdict's two parts, its evidence and its next steps."""
    lines = [verdict["headline"], verdict["general_line"]]
    lines += [f"  {reason}" for reason in verdict["reasons"]]
    lines += [f"  next: {step}" for step in verdict["next_steps"]]
    return lines
