"""ASHA over training steps, and the rungs it judges trials at.

The scheduler decides which trials go on; the searcher (hpo.searcher) must know the
same rungs so that its model compares trials at a fidelity ASHA actually judged them
at. `asha_rungs` is that shared definition, computed the way Ray's ASHA lays out its
milestones, so the two can never drift apart.

The engine's scheduler is `StrictASHA`: ASHA's stopping rule with the share that goes
on counted strictly (see its docstring). `StopRecordingASHA` is Ray's stock ASHA with
the same record of which trials it stopped; the search benchmark runs it as a peer.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

METRIC = "objective"
STEP = "step"


def asha_rungs(grace_period: int, max_t: int, reduction_factor: float) -> tuple[int, ...]:
    """The steps ASHA judges trials at (Ray's bracket-0 milestones), followed by `max_t`.

    Ray places milestones at grace_period * reduction_factor**k for k < int(log(max_t / grace)
    / log(reduction_factor) + 1). Trials report every `grace_period` steps (the rung interval),
    so a trial is judged at the first report at or past a milestone; one that survives them
    all runs to max_t.
    """
    if not 0 < grace_period <= max_t:
        raise ValueError(f"`0 < grace_period <= max_t` must hold, but got (grace_period={grace_period}, max_t={max_t})")
    if reduction_factor <= 1:
        raise ValueError(f"reduction_factor must be > 1, got {reduction_factor}")
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    milestones = (grace_period * reduction_factor**k for k in range(count))
    judged = {min(max_t, math.ceil(m / grace_period - 1e-9) * grace_period) for m in milestones}
    return tuple(sorted(judged | {max_t}))


class StopRecordingASHA(ASHAScheduler):
    """Ray's ASHA, remembering which trials it stopped so the record can say why a trial ended."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stopped_at: dict[str, int] = {}

    def on_trial_result(self, tune_controller, trial, result):
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and not result.get("final"):
            self.stopped_at[trial.trial_id] = int(result[STEP])
        return action


def make_ray_asha(max_steps: int, rung_interval: int, reduction_factor: float) -> StopRecordingASHA:
    """Ray's stock ASHA: one bracket over `step`, maximizing `objective`."""
    return StopRecordingASHA(
        time_attr=STEP,
        metric=METRIC,
        mode="max",
        max_t=max_steps,
        grace_period=rung_interval,
        reduction_factor=reduction_factor,
    )


def goes_on(value: float, recorded: list[float], reduction_factor: float) -> bool:
    """Whether `value` ranks within the top floor(n / reduction_factor) of the n values at its rung.

    `recorded` includes `value` itself. Below `reduction_factor` values nothing goes on:
    there is not yet a field to rank against.
    """
    places = math.floor(len(recorded) / reduction_factor)
    better = sum(1 for other in recorded if other > value)
    return better < places


class StrictASHA(FIFOScheduler):
    """Asynchronous successive halving whose promotion share is counted strictly.

    Like Ray's ASHA, a trial is judged once at each rung against every trial recorded
    there so far, and goes on only if it ranks in the top 1/reduction_factor. Ray's ASHA
    compares it with a percentile of the *other* records, so the first trial at a rung
    always goes on and the next ones nearly always do: a sweep's first trials run to the
    end whatever they are worth. Here a trial goes on only if it ranks within the top
    floor(n / reduction_factor) of the n trials recorded at the rung, itself included, so
    nothing is promoted before a rung holds reduction_factor trials. Measured on LCBench
    with the rung-seam TPE (benchmarks/search), this spends less of the start of a sweep
    on full trainings of early, unremarkable configurations; as rungs fill up the two
    rules converge. Non-finite objectives rank last.
    """

    def __init__(self, max_steps: int, rung_interval: int, reduction_factor: float) -> None:
        super().__init__()
        self._metric = METRIC
        self.max_steps = max_steps
        self.reduction_factor = reduction_factor
        self.rungs = tuple(step for step in asha_rungs(rung_interval, max_steps, reduction_factor) if step < max_steps)
        self.recorded: dict[int, dict[str, float]] = {rung: {} for rung in self.rungs}
        self.stopped_at: dict[str, int] = {}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if STEP not in result or METRIC not in result:
            return TrialScheduler.CONTINUE
        step = int(result[STEP])
        if step >= self.max_steps:
            return TrialScheduler.STOP
        passed = [rung for rung in self.rungs if rung <= step]
        if not passed or trial.trial_id in self.recorded[passed[-1]]:
            return TrialScheduler.CONTINUE
        value = float(result[METRIC]) if math.isfinite(result[METRIC]) else -math.inf
        at_rung = self.recorded[passed[-1]]
        at_rung[trial.trial_id] = value
        if goes_on(value, list(at_rung.values()), self.reduction_factor):
            return TrialScheduler.CONTINUE
        self.stopped_at[trial.trial_id] = step
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        counts = ", ".join(f"step {rung}: {len(self.recorded[rung])}" for rung in self.rungs)
        return f"StrictASHA (reduction factor {self.reduction_factor:g}) trials judged at {counts}"

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_bytes(pickle.dumps(self.__dict__))

    def restore(self, checkpoint_path: str) -> None:
        self.__dict__.update(pickle.loads(Path(checkpoint_path).read_bytes()))


def make_asha(max_steps: int, rung_interval: int, reduction_factor: float) -> StrictASHA:
    """The engine's scheduler: strict ASHA over `step`, maximizing `objective`."""
    return StrictASHA(max_steps, rung_interval, reduction_factor)
