"""ASHA over training steps, and the rungs it judges trials at.

The scheduler decides which trials go on; the searcher (hpo.search.searcher) must know the
same rungs so that its model compares trials at a fidelity ASHA actually judged them
at. `asha_rungs` (hpo.config.plan, so that reading a sweep file needs no Ray) is that shared
definition, computed the way Ray's ASHA lays out its milestones, so the two can never drift apart.

The engine's scheduler is `StrictASHA`: ASHA's stopping rule with the share that goes
on counted strictly (see its docstring).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from hpo.config.plan import asha_rungs
from hpo.run.continuation import recorded_id

METRIC = "objective"
STEP = "step"


def goes_on(value: float, recorded: list[float], reduction_factor: float, lead: bool = True) -> bool:
    """Whether `value` ranks within the top floor(n / reduction_factor) of the n values at its rung.

    `recorded` includes `value` itself. Until a rung holds `reduction_factor` values, that
    share is empty: with `lead`, a new best goes on anyway (the rung's leader); without,
    every trial stops there.
    """
    places = math.floor(len(recorded) / reduction_factor)
    if lead:
        places = max(1, places)
    better = sum(1 for other in recorded if other > value)
    return better < places


def leads_go_on(trials: int | None, judged_rungs: int, reduction_factor: float) -> bool:
    """Whether a rung's leader goes on before the rung holds `reduction_factor` values.

    A sweep of at most reduction_factor ** (judged_rungs + 1) trials could not count on
    sending `reduction_factor` trials through every rung by the share rule alone, so there
    the leader goes on and a small sweep still trains its best trials to the end. A
    larger sweep, or one bounded only by time or compute (`trials` None), makes the
    first trials at a rung wait for company: on LCBench, full trainings of early leaders
    were the largest share of what ours spent before matching random search's result,
    and without them it got there with less of the budget (benchmarks/README.md, "A
    rung's first trials wait").
    """
    return trials is not None and trials <= reduction_factor ** (judged_rungs + 1)


class StrictASHA(FIFOScheduler):
    """Asynchronous successive halving whose promotion share is counted strictly.

    Like Ray's ASHA, a trial is judged once at each rung against every trial recorded
    there so far, and goes on only if it ranks in the top 1/reduction_factor. Ray's ASHA
    compares it with a percentile of the *other* records, so the first trial at a rung
    always goes on and the next ones nearly always do: a sweep's first trials run to the
    end whatever they are worth. Here a trial goes on only if it ranks within the top
    floor(n / reduction_factor) of the n trials recorded at the rung, itself included.
    Before a rung holds reduction_factor values, its leader goes on only in a sweep too
    small to fill the rungs (`leads_go_on`, from the sweep's `trials` budget), so a
    sweep of a few trials still finishes its best ones. Measured on LCBench with the
    rung-seam TPE (benchmarks/search), this spends less of the start of a sweep on full
    trainings of early, unremarkable configurations; as rungs fill up the rules
    converge. Non-finite objectives rank last.
    """

    def __init__(self, max_steps: int, rung_interval: int, reduction_factor: float, trials: int | None = None) -> None:
        super().__init__()
        self._metric = METRIC
        self.max_steps = max_steps
        self.reduction_factor = reduction_factor
        self.rungs = tuple(step for step in asha_rungs(rung_interval, max_steps, reduction_factor) if step < max_steps)
        self.leads = leads_go_on(trials, len(self.rungs), reduction_factor)
        self.recorded: dict[int, dict[str, float]] = {rung: {} for rung in self.rungs}
        self.stopped_at: dict[str, int] = {}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if STEP not in result or METRIC not in result:
            return TrialScheduler.CONTINUE
        return self.decide(recorded_id(trial), int(result[STEP]), result[METRIC])

    def decide(self, trial_id: str, step: int, value: float | None) -> str:
        """CONTINUE or STOP for a trial's result at `step`, recording it at the rung it reached."""
        if step >= self.max_steps:
            return TrialScheduler.STOP
        passed = [rung for rung in self.rungs if rung <= step]
        if not passed or trial_id in self.recorded[passed[-1]]:
            return TrialScheduler.CONTINUE
        value = float(value) if value is not None and math.isfinite(value) else -math.inf
        at_rung = self.recorded[passed[-1]]
        at_rung[trial_id] = value
        if goes_on(value, list(at_rung.values()), self.reduction_factor, self.leads):
            return TrialScheduler.CONTINUE
        self.stopped_at[trial_id] = step
        return TrialScheduler.STOP

    def replay(self, results: Iterable[tuple[str, int, float | None]]) -> None:
        """Rebuild the rung records of a resumed sweep from its recorded (trial, step, objective) results,
        in the order they were recorded; trials go on under the ids they were recorded with."""
        for trial_id, step, value in results:
            self.decide(trial_id, step, value)

    def debug_string(self) -> str:
        counts = ", ".join(f"step {rung}: {len(self.recorded[rung])}" for rung in self.rungs)
        return f"StrictASHA (reduction factor {self.reduction_factor:g}) trials judged at {counts}"

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_bytes(pickle.dumps(self.__dict__))

    def restore(self, checkpoint_path: str) -> None:
        self.__dict__.update(pickle.loads(Path(checkpoint_path).read_bytes()))


def make_asha(max_steps: int, rung_interval: int, reduction_factor: float, trials: int | None = None) -> StrictASHA:
    """The engine's scheduler: strict ASHA over `step`, maximizing `objective`, for a sweep of
    `trials` trials (None: bounded by time or compute only)."""
    return StrictASHA(max_steps, rung_interval, reduction_factor, trials)
