"""From incumbent traces to the benchmark's figures: regret at a compute, budget fraction, hit rate.

Compute is counted in epochs; 52 epochs are one full training, and a run's budget is
`budget_trainings` full trainings. The target a method must match on a task is the
median, over seeds, of full random search's incumbent at the end of the budget. A run's
budget fraction is the compute it spent before its incumbent reached that target,
divided by the budget (infinite when it never did); the hit rate is the share of runs
that reached it. Medians are taken over all runs of a method (tasks x seeds), a run
that never hit counting as infinite. With several workers, the overlap is the part of a
run's compute that other workers ran while the trial that reached the target trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.search.problem import Reference


@dataclass(frozen=True)
class Run:
    method: str
    task: str
    seed: int
    epochs: tuple[int, ...]  # cumulative epochs at each improvement of the incumbent
    values: tuple[float, ...]  # the incumbent from then on
    seconds: tuple[float, ...]  # simulated time at each improvement
    overlap: tuple[int, ...]  # epochs other trials ran while the improving trial trained (several workers)
    trials: int
    simulated_seconds: float
    max_running: int
    suggested_while_running: int
    wall_seconds: float

    def incumbent_at(self, epochs: float) -> float:
        """The best value observed within `epochs` of compute (-inf before the first epoch)."""
        index = int(np.searchsorted(self.epochs, epochs, side="right"))
        return self.values[index - 1] if index else -math.inf

    def epochs_to_reach(self, target: float) -> float:
        return self._first_reaching(target, self.epochs)

    def seconds_to_reach(self, target: float) -> float:
        """Simulated wall-clock until the incumbent reached `target` (all workers busy in parallel)."""
        return self._first_reaching(target, self.seconds)

    def overlap_to_reach(self, target: float) -> float:
        """Of `epochs_to_reach(target)`, the epochs other workers ran while the trial that reached it trained."""
        return self._first_reaching(target, self.overlap)

    def _first_reaching(self, target: float, axis: Sequence[float]) -> float:
        for when, value in zip(axis, self.values):
            if value >= target:
                return float(when)
        return math.inf


def targets(runs: Sequence[Run], baseline: str, budget_epochs: int) -> dict[str, float]:
    """Per task: the median over seeds of the baseline's incumbent at the end of the budget."""
    finals: dict[str, list[float]] = {}
    for run in runs:
        if run.method == baseline:
            finals.setdefault(run.task, []).append(run.incumbent_at(budget_epochs))
    return {task: float(np.median(values)) for task, values in finals.items()}


@dataclass(frozen=True)
class Summary:
    method: str
    runs: int
    budget_fraction: float  # median over runs; inf when fewer than half hit the target
    hit_rate: float
    regret: float  # median normalized regret at the end of the budget
    regret_mean: float
    trials: float  # median trials started per run
    simulated_hours: float  # median simulated wall-clock of a run
    hours_to_match: float  # median simulated wall-clock before the target; inf when under half hit it
    fraction_less_overlap: float  # the budget fraction without the overlap (what other workers ran meanwhile)


def summarize(
    runs: Sequence[Run], references: dict[str, Reference], goal: dict[str, float], budget_epochs: int
) -> Summary:
    fractions = [run.epochs_to_reach(goal[run.task]) / budget_epochs for run in runs]
    overlaps = [run.overlap_to_reach(goal[run.task]) / budget_epochs for run in runs]
    regrets = [references[run.task].regret(run.incumbent_at(budget_epochs)) for run in runs]
    return Summary(
        method=runs[0].method,
        runs=len(runs),
        budget_fraction=float(np.median(fractions)),
        hit_rate=float(np.mean([f <= 1.0 for f in fractions])),
        regret=float(np.median(regrets)),
        regret_mean=float(np.mean(regrets)),
        trials=float(np.median([run.trials for run in runs])),
        simulated_hours=float(np.median([run.simulated_seconds for run in runs]) / 3600),
        hours_to_match=float(np.median([run.seconds_to_reach(goal[run.task]) for run in runs]) / 3600),
        fraction_less_overlap=float(np.median([f - o if math.isfinite(f) else f for f, o in zip(fractions, overlaps)])),
    )


def regret_curve(runs: Sequence[Run], references: dict[str, Reference], grid: np.ndarray) -> np.ndarray:
    """Normalized regret of every run at every compute of `grid` (epochs): shape (runs, grid)."""
    return np.array([[references[run.task].regret(run.incumbent_at(e)) for e in grid] for run in runs])
