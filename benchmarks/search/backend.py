"""A simulated-time backend: Ray Tune's trial loop with LCBench curves instead of training.

A method reaches the simulation through a driver: which trial a free worker runs, and
whether a trial goes on after each epoch's result. `RayDriver` drives the real objects a
sweep uses (a `ray.tune.search.Searcher` and a `ray.tune.schedulers.TrialScheduler`); only
the executor is simulated. Its calls follow Ray's TuneController: a result goes to
`scheduler.on_trial_result` first and reaches `searcher.on_trial_result` only when the
scheduler does not stop the trial; a stopped or finished trial ends with
`scheduler.on_trial_complete` and `searcher.on_trial_complete(result=last result)`; a
paused trial that a scheduler drops gets `on_trial_remove` and `searcher.on_trial_complete`
without a result. A free worker runs what `scheduler.choose_trial_to_run` picks, else a
new trial from `searcher.suggest`, at the moment it frees up, so with several workers the
searcher suggests while other trials are still running. Syne Tune's schedulers have a
driver of their own (benchmarks.search.syne).

Each epoch of a trial takes its surrogate time (`time_cummax` differences); events are
processed in simulated-time order. Compute is counted in epochs. With several workers the
trace also records, at each improvement, the overlap: the epochs other trials ran since
the improving trial started, the compute that parallel workers add to what one worker
would have spent on the same trials.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from benchmarks.search.problem import Curve
from hpo.search.scheduler import METRIC, STEP


@dataclass(eq=False)
class SimTrial:
    """What Ray's schedulers read from a Trial, plus the simulation's own bookkeeping."""

    trial_id: str
    config: dict
    curve: Curve
    status: str = Trial.PENDING
    is_saving: bool = False
    last_result: dict = field(default_factory=dict)
    epochs: int = 0
    started: int = 0  # epochs spent by the run when this trial started

    def __str__(self) -> str:
        return self.trial_id

    def result(self) -> dict:
        epoch = self.epochs
        return {
            METRIC: float(self.curve.accuracy[epoch - 1]),
            STEP: epoch,
            "training_iteration": epoch,
            "final": 1.0 if epoch == len(self.curve.accuracy) else 0.0,
            "trial_id": self.trial_id,
        }


@dataclass
class Trace:
    """What one run observed: the incumbent after each improvement, and how the run went."""

    epochs: list[int] = field(default_factory=list)  # cumulative epochs at each improvement
    values: list[float] = field(default_factory=list)  # the incumbent from then on
    seconds: list[float] = field(default_factory=list)  # simulated time at each improvement
    overlap: list[int] = field(default_factory=list)  # epochs others ran while the improving trial trained
    trials: int = 0
    simulated_seconds: float = 0.0
    max_running: int = 0
    suggested_while_running: int = 0  # suggestions made while another trial was mid-training

    def observe(self, spent: int, value: float, clock: float, trial: SimTrial) -> None:
        if not self.values or value > self.values[-1]:
            self.epochs.append(spent)
            self.values.append(value)
            self.seconds.append(clock)
            self.overlap.append(spent - trial.started - trial.epochs)


class RayDriver:
    """A Ray searcher and scheduler, called as Ray's TuneController calls them; schedulers call back into it."""

    def __init__(
        self, searcher: Searcher, scheduler: TrialScheduler, curve_of: Callable[[dict], Curve], pending: int = 0
    ) -> None:
        self.searcher = searcher
        self.scheduler = scheduler
        self.curve_of = curve_of
        self.pending = pending  # trials suggested ahead of need, as Ray keeps a queue of pending trials
        self.trials: list[SimTrial] = []

    def get_trials(self) -> list[SimTrial]:
        return self.trials

    def add_trial(self) -> SimTrial | None:
        trial_id = f"{len(self.trials):05d}"
        config = self.searcher.suggest(trial_id)
        if config is None:
            return None
        trial = SimTrial(trial_id, config, self.curve_of(config))
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)
        return trial

    def stop_trial(self, trial: SimTrial) -> None:
        if trial.status in (Trial.ERROR, Trial.TERMINATED):
            return
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
            self.searcher.on_trial_complete(trial.trial_id)
        else:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self.searcher.on_trial_complete(trial.trial_id, result=trial.last_result)
        trial.status = Trial.TERMINATED

    def next_trial(self) -> SimTrial | None:
        """What a free worker runs: the scheduler's pick, else a freshly suggested trial.

        `pending` trials are suggested ahead of need; synchronous Hyperband needs its
        brackets filled before it can halve them.
        """
        while sum(t.status == Trial.PENDING for t in self.trials) < self.pending:
            if self.add_trial() is None:
                break
        trial = self.scheduler.choose_trial_to_run(self)
        if trial is None and self.add_trial() is not None:
            trial = self.scheduler.choose_trial_to_run(self)
        return trial

    def report(self, trial: SimTrial, result: dict) -> bool:
        """Hand an epoch's result to the scheduler, then (unless it stops the trial) to the searcher;
        whether the trial trains on."""
        decision = self.scheduler.on_trial_result(self, trial, result)
        if decision != TrialScheduler.STOP:
            self.searcher.on_trial_result(trial.trial_id, result)
        trial.last_result = result
        if decision == TrialScheduler.STOP or result["final"]:
            self.stop_trial(trial)
            return False
        if decision == TrialScheduler.PAUSE:
            trial.status = Trial.PAUSED
            return False
        return True


class Driver(Protocol):
    """What the simulation asks of a method: the next trial for a free worker, and what each result decides."""

    trials: list[SimTrial]

    def next_trial(self) -> SimTrial | None: ...

    def report(self, trial: SimTrial, result: dict) -> bool: ...


def simulate(driver: Driver, budget_epochs: int, workers: int) -> Trace:
    """Run the driver's trials on `workers` simulated workers until `budget_epochs` epochs are spent."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    trace = Trace()
    events: list[tuple[float, int, SimTrial]] = []  # (time its next epoch ends, tie-break, trial)
    running: set[SimTrial] = set()
    clock, spent, order = 0.0, 0, 0

    def start(trial: SimTrial) -> None:
        nonlocal order
        if trial.epochs == 0:
            trial.started = spent
        trial.status = Trial.RUNNING
        running.add(trial)
        heapq.heappush(events, (clock + float(trial.curve.epoch_seconds[trial.epochs]), order, trial))
        order += 1

    while spent < budget_epochs:
        while len(running) < workers:
            known = len(driver.trials)
            trial = driver.next_trial()
            if trial is None:
                break
            if running and len(driver.trials) > known:
                trace.suggested_while_running += 1
            start(trial)
        trace.max_running = max(trace.max_running, len(running))
        if not events:
            break
        clock, _, trial = heapq.heappop(events)
        trial.epochs += 1
        spent += 1
        result = trial.result()
        trace.observe(spent, result[METRIC], clock, trial)
        running.discard(trial)
        if driver.report(trial, result):
            start(trial)
    trace.trials = len(driver.trials)
    trace.simulated_seconds = clock
    return trace
