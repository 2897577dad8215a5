"""ASHA over training steps, and the rungs it judges trials at.

The scheduler decides which trials go on; the searcher (hpo.searcher) must know the
same rungs so that its model compares trials at a fidelity ASHA actually judged them
at. `asha_rungs` is that shared definition, computed the way Ray's ASHA lays out its
milestones, so the two can never drift apart.
"""

from __future__ import annotations

import math

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

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
    """ASHA that remembers which trials it stopped, so the record can say why a trial ended."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stopped_at: dict[str, int] = {}

    def on_trial_result(self, tune_controller, trial, result):
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and not result.get("final"):
            self.stopped_at[trial.trial_id] = int(result[STEP])
        return action


def make_asha(max_steps: int, rung_interval: int, reduction_factor: float) -> StopRecordingASHA:
    """The engine's ASHA: one bracket over `step`, maximizing `objective`."""
    return StopRecordingASHA(
        time_attr=STEP,
        metric=METRIC,
        mode="max",
        max_t=max_steps,
        grace_period=rung_interval,
        reduction_factor=reduction_factor,
    )
