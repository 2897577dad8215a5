"""Optuna TPE as a Ray Tune searcher, owning how multi-fidelity results reach the sampler.

Each rung's objective is reported to the Optuna trial as an intermediate value at its
training step. A trial that ASHA stops early is told to Optuna as *pruned* (with those
intermediate values), never as complete with a low-fidelity score; a trial that fails
is told as failed. The study lives in a journal file, safe for several processes, so
a resumed sweep keeps what the sampler learnt.
"""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search import Searcher

from hpo.space import SearchSpace

log = logging.getLogger(__name__)
METRIC = "objective"
STEP = "step"


def open_study(journal: Path, name: str, seed: int, startup_trials: int) -> optuna.Study:
    """The sweep's study (created or re-opened) with a seeded TPE sampler."""
    sampler = optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=startup_trials,
        multivariate=True,
        constant_liar=True,  # concurrent trials: running ones count as pessimistic guesses
    )
    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, direction="maximize", load_if_exists=True
    )


class TPESearcher(Searcher):
    """Suggests configs from an Optuna study; the first suggestion is the space's defaults."""

    def __init__(self, space: SearchSpace, journal: Path, study_name: str, seed: int, startup_trials: int) -> None:
        super().__init__(metric=METRIC, mode="max")
        self.space = space
        self.journal = Path(journal)
        self.study_name = study_name
        self.seed = seed
        self.startup_trials = startup_trials
        self.live: dict[str, optuna.Trial] = {}  # Ray trial id -> its running Optuna trial
        self._study: optuna.Study | None = None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = open_study(self.journal, self.study_name, self.seed, self.startup_trials)
            if not self._study.trials:
                self._study.enqueue_trial(self.space.defaults())
        return self._study

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the space comes from the search-space file, not from Ray's param_space

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        trial = self.study.ask(self.space.distributions())
        self.live[trial_id] = trial
        return dict(trial.params)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value = result.get(METRIC)
        trial = self.live.get(trial_id)
        if trial is not None and value is not None and math.isfinite(value):
            trial.report(float(value), int(result[STEP]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        state, value = completion(result, error)
        self.study.tell(trial.number, value, state=state, skip_if_finished=True)

    def get_state(self) -> dict:
        return {"numbers": {trial_id: trial.number for trial_id, trial in self.live.items()}}

    def set_state(self, state: dict) -> None:
        """Re-attach running trials to their Optuna trials after a restart."""
        storage = self.study._storage
        self.live = {
            trial_id: optuna.Trial(self.study, storage.get_trial_id_from_study_id_trial_number(self.study._study_id, n))
            for trial_id, n in state["numbers"].items()
        }

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_bytes(pickle.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(pickle.loads(Path(checkpoint_path).read_bytes()))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_study"] = None  # re-opened from the journal file where it is needed
        state["live"] = {}  # Optuna trials hold the study; set_state re-attaches them
        return state


def completion(result: dict | None, error: bool) -> tuple[TrialState, float | None]:
    """How a finished Ray trial is told to Optuna: complete, pruned (stopped early) or failed."""
    if error or not result or result.get(METRIC) is None or not math.isfinite(result[METRIC]):
        return TrialState.FAIL, None
    if result.get("final"):
        return TrialState.COMPLETE, float(result[METRIC])
    return TrialState.PRUNED, None
