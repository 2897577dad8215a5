"""Small budgets: the same runs read at 5, 10 and 20 full trainings besides 50, the regime of an LLM sweep.

A run's first B full trainings are the whole of a run with a budget of B: neither the
searchers nor the schedulers know the budget, and the simulation processes epochs in
time order, so cutting a run's incumbent trace at B x 52 epochs gives exactly the run
that budget would have made. At each budget the target on a task is the median, over
seeds, of full random search's incumbent after B trainings.

Per budget, method and worker count: the median simulated hours until the incumbent
matches that target (`never` when under half the runs get there within the budget), the
median normalized regret at the end of the budget, and, paired run by run (same task and
seed), in how many runs ours matches sooner than a named peer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from benchmarks.search.lcbench import N_EPOCHS
from benchmarks.search.metrics import Run, Summary, summarize, targets
from benchmarks.search.problem import Reference

BUDGETS = (5, 10, 20, 50)  # full trainings
REGRET_BUDGETS = (5, 10)  # where ours must end with the lowest regret of all
PAIRED_SHARE = 0.60  # ours sooner than the paired peer in at least this share of runs
SPEEDUP = 10.0  # at SPEEDUP_WORKERS, at least this many times sooner than one worker
SPEEDUP_WORKERS = 16


def within(run: Run, epochs: int) -> Run:
    """The run as if its budget were `epochs`: the improvements made by then."""
    kept = int(np.searchsorted(run.epochs, epochs, side="right"))
    return replace(
        run,
        epochs=run.epochs[:kept],
        values=run.values[:kept],
        seconds=run.seconds[:kept],
        overlap=run.overlap[:kept],
    )


@dataclass(frozen=True)
class Pairing:
    """Ours against a peer over runs paired by task and seed: who matched the target sooner."""

    sooner: int
    later: int
    runs: int  # pairs in which at least one of the two matched (both never: no information)

    @property
    def share(self) -> float:
        return self.sooner / self.runs if self.runs else math.nan


def pair(ours: Sequence[Run], peer: Sequence[Run], goal: dict[str, float]) -> Pairing:
    theirs = {(run.task, run.seed): run for run in peer}
    sooner = later = runs = 0
    for run in ours:
        other = theirs.get((run.task, run.seed))
        if other is None:
            continue
        mine, their = run.seconds_to_reach(goal[run.task]), other.seconds_to_reach(goal[run.task])
        if math.isinf(mine) and math.isinf(their):
            continue
        runs += 1
        sooner += mine < their
        later += their < mine
    return Pairing(sooner, later, runs)


@dataclass(frozen=True)
class Budgeted:
    """Every method's summary at one budget, and the target it was measured against."""

    budget: int  # full trainings
    goal: dict[str, float]
    summaries: dict[str, Summary]
    runs: dict[str, list[Run]]


def at_budgets(
    runs: Sequence[Run],
    references: dict[str, Reference],
    baseline: str,
    budgets: Sequence[int] = BUDGETS,
    limits: dict[str, int] | None = None,
) -> list[Budgeted]:
    """The runs read at each budget; a method that ran with a smaller budget (`limits`, full trainings
    by method key) is left out of the larger ones."""
    limits = limits or {}
    found = []
    for budget in budgets:
        epochs = budget * N_EPOCHS
        cut = [within(run, epochs) for run in runs if limits.get(run.method, budget) >= budget]
        goal = targets(cut, baseline, epochs)
        by_method: dict[str, list[Run]] = {}
        for run in cut:
            by_method.setdefault(run.method, []).append(run)
        summaries = {m: summarize(rs, references, goal, epochs) for m, rs in by_method.items()}
        found.append(Budgeted(budget, goal, summaries, by_method))
    return found


def cell(values: Sequence[str]) -> str:
    return " / ".join(values)


def hours(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.3f}"


def budget_tables(
    found: Sequence[Budgeted], names: Sequence[str], workers: Sequence[int], ours: str, paired_with: str
) -> list[str]:
    """One table per budget: every method's hours to match and final regret at each worker count,
    and ours against `paired_with` run by run."""
    lines = []
    counts = " / ".join(str(w) for w in workers)
    for at in found:
        lines += [
            f"### {at.budget} full trainings",
            "",
            f"| method | simulated h to match ({counts} workers) | regret ({counts} workers) |",
            "|---|---|---|",
        ]
        for name in names:
            rows = [at.summaries.get(key(name, w)) for w in workers]
            lines.append(
                f"| {name} | {cell([hours(s.hours_to_match) if s else '-' for s in rows])} "
                f"| {cell([f'{s.regret:.3f}' if s else '-' for s in rows])} |"
            )
        pairings = [pairing(at, ours, paired_with, w) for w in workers]
        lines.append(
            f"| {ours} sooner than {paired_with}, paired | "
            f"{cell([f'{p.sooner} of {p.runs}' if p else '-' for p in pairings])} | |"
        )
        lines.append("")
    return lines


def key(name: str, workers: int) -> str:
    return name if workers == 1 else f"{name} x{workers}"


def pairing(at: Budgeted, ours: str, peer: str, workers: int) -> Pairing | None:
    mine, theirs = at.runs.get(key(ours, workers)), at.runs.get(key(peer, workers))
    if mine is None or theirs is None:
        return None
    return pair(mine, theirs, at.goal)


def goal_lines(found: Sequence[Budgeted], names: Sequence[str], workers: Sequence[int], ours: str, paired_with: str):
    """The goals at every budget and worker count: ours matches sooner than every other method (median),
    sooner than `paired_with` in PAIRED_SHARE of paired runs, ends with the lowest regret at
    REGRET_BUDGETS, and with SPEEDUP_WORKERS workers is SPEEDUP times sooner than with one."""
    lines = []
    for at in found:
        for count in workers:
            mine = at.summaries.get(key(ours, count))
            if mine is None:
                continue
            others = {n: at.summaries[key(n, count)] for n in names if n != ours and key(n, count) in at.summaries}
            behind = [n for n, s in others.items() if not mine.hours_to_match < s.hours_to_match]
            checks = [
                f"sooner than every other method: {'met' if not behind else 'NOT met (' + ', '.join(behind) + ')'}"
            ]
            paired = pairing(at, ours, paired_with, count)
            if paired is not None:
                met = paired.share >= PAIRED_SHARE
                checks.append(
                    f"sooner than {paired_with} in {paired.sooner} of {paired.runs} paired runs "
                    f"(goal >= {PAIRED_SHARE:.0%}): {'met' if met else 'NOT met'}"
                )
            if at.budget in REGRET_BUDGETS:
                lower = [n for n, s in others.items() if s.regret < mine.regret]
                checks.append(
                    f"regret {mine.regret:.3f}, the lowest: {'met' if not lower else 'NOT met (' + ', '.join(lower) + ')'}"
                )
            if count == SPEEDUP_WORKERS and key(ours, 1) in at.summaries:
                gain = speedup(at.summaries[key(ours, 1)], mine)
                checks.append(f"speedup {gain:.1f}x over one worker (goal >= {SPEEDUP:g}x): "
                              f"{'met' if gain >= SPEEDUP else 'NOT met'}")  # fmt: skip
            lines.append(f"- {at.budget} trainings, {count} worker{'s' * (count > 1)}: " + "; ".join(checks))
    return lines


def speedup(single: Summary, multi: Summary) -> float:
    """One worker's simulated hours to match over these (nan when either never matches)."""
    if not (0 < multi.hours_to_match < math.inf) or math.isinf(single.hours_to_match):
        return math.nan
    return single.hours_to_match / multi.hours_to_match
