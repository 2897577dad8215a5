"""Peers of the engine's searcher and scheduler that a sweep never runs, kept for comparison.

PrunedTPESearcher   TPESearcher with Optuna's own wiring: a plain TPE over complete and
                    pruned trials (the engine's wiring before the rung seam)
StopRecordingASHA   Ray's stock ASHA, recording which trials it stopped as StrictASHA does
"""

from __future__ import annotations

from optuna.samplers import BaseSampler, TPESampler
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from hpo.search.scheduler import METRIC, STEP
from hpo.search.searcher import TPESearcher


class PrunedTPESearcher(TPESearcher):
    """TPESearcher whose sampler is Optuna's own: multivariate TPE over complete and pruned trials.

    Pruned trials are ranked by how far they got, then by their last value. `startup_trials`
    is TPE's own count of random trials.
    """

    def make_sampler(self, seed: int) -> BaseSampler:
        return TPESampler(
            seed=seed,
            n_startup_trials=self.startup_trials,
            multivariate=True,
            constant_liar=True,  # concurrent trials: running ones count as pessimistic guesses
        )


SEAMS = {"rung": TPESearcher, "pruned": PrunedTPESearcher}  # how the searcher's records reach TPE


class StopRecordingASHA(ASHAScheduler):
    """Ray's ASHA, remembering which trials it stopped and at which step (`stopped_at`), as StrictASHA does."""

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
