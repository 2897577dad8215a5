"""Optuna TPE as a Ray Tune searcher, owning how multi-fidelity results reach the sampler.

Every reported rung is recorded on the Optuna trial as an intermediate value at its
training step (including the result ASHA stopped the trial on, which Ray hands only to
`on_trial_complete`). A trial that ran to the end is told as complete, one that ASHA
stopped early as *pruned*, one that failed as failed. The study lives in a journal
file, safe for several processes, so a resumed sweep keeps what the sampler learnt.
Each Optuna trial records the Ray trial id trials.parquet and W&B know it by
(`ray_trial_id`) and every Ray trial that ran it (`ray_trial_ids`). A resumed sweep's
searcher hands out the trials left running first, with their own parameters
(`continue_trials`), and draws new ones from a random stream of its own (the study's
size joins the seed): with the sweep's seed alone, its first draws were the stopped
sweep's again, and a resumed sweep re-ran a configuration it had already tried.

How the sampler learns from those records is the seam between searcher and scheduler,
the rung seam: `RungTPESampler`, BOHB-style. TPE is fit at one fidelity, on every trial's
value *at that rung*: once the lowest ASHA rung holds `startup_trials` values, the highest
rung that holds `CLIMB_OBSERVATIONS` (3); trials that never reached it (stopped lower, or
still running) count only as examples of where not to look. Low-fidelity scores are never
compared with high-fidelity ones, and a trial that went deep only because it started early
gets no credit for depth alone. On LCBench, climbing to a rung as soon as it holds 3 values
matched random search's final result sooner than waiting for 15 (benchmarks/README.md).
Every third trial is instead a local step around the incumbent (`local_step`): a Gaussian
move of each parameter, a fifth of its range wide, from the best trial at the highest step
reported.

benchmarks/search measures it, with the engine's `StrictASHA`, against its peers on LCBench
learning curves; benchmarks/README.md lists them and has the command, and
results/search/results.md the table.
"""

from __future__ import annotations

import logging
import math
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from hpo.run.continuation import CONTINUES
from hpo.search.history import History
from hpo.search.prior import PriorView, prior_share, warm_configs
from hpo.search.scheduler import METRIC, STEP
from hpo.search.space import SearchSpace
from trainers.shared import Flag

log = logging.getLogger(__name__)
MODEL_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
CLIMB_OBSERVATIONS = 3  # values a rung above the lowest needs before TPE is fit there
LOCAL_EVERY = 3  # once TPE models, every third trial is a local step around the incumbent
LOCAL_SPREAD = 0.2  # the step's standard deviation, as a share of each parameter's range
RAY_TRIAL_ID = "ray_trial_id"  # user attr: the id trials.parquet records the trial under
RAY_TRIAL_IDS = "ray_trial_ids"  # user attr: every Ray trial that ran it, in order


def model_rung(trials: Sequence[FrozenTrial], rungs: Sequence[int], min_observations: int) -> int | None:
    """The rung TPE is fit at: none until the lowest rung holds `min_observations` values,
    then the highest rung holding at least min(CLIMB_OBSERVATIONS, min_observations).

    The climb is quick because a higher rung holds the few trials that beat the rest
    lower down, and waiting for more values there leaves TPE modelling low-fidelity noise
    for longer: on LCBench, climbing at 3 values matched random search's result sooner
    than at 2 or 15, and as soon as at 5 once the local steps were there
    (benchmarks/README.md, "Edges and a quick climb"). With no rungs given, every
    reported step is a candidate.
    """
    counts: dict[int, int] = {}
    for trial in trials:
        for step in trial.intermediate_values:
            counts[step] = counts.get(step, 0) + 1
    candidates = sorted(rungs or counts)
    if not candidates or counts.get(candidates[0], 0) < min_observations:
        return None
    climb = min(CLIMB_OBSERVATIONS, min_observations)
    return max(step for step in candidates if counts.get(step, 0) >= climb)  # the lowest always qualifies


def values_at(trials: Sequence[FrozenTrial], step: int | None) -> int:
    """How many of `trials` reported a value at `step`."""
    return sum(step in t.intermediate_values for t in trials)


def incumbent(trials: Sequence[FrozenTrial], direction: optuna.study.StudyDirection) -> FrozenTrial | None:
    """The trial with the best value at the highest step any trial has reported (None before any report)."""
    reported = [t for t in trials if t.intermediate_values]
    if not reported:
        return None
    top = max(max(t.intermediate_values) for t in reported)
    sign = 1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    return max((t for t in reported if top in t.intermediate_values), key=lambda t: sign * t.intermediate_values[top])


def local_step(
    params: dict[str, Any], search_space: dict[str, BaseDistribution], rng: np.random.RandomState
) -> dict[str, Any]:
    """`params` moved by a Gaussian step in every parameter: LOCAL_SPREAD of its range (log range
    for log parameters, the choices' positions in increasing order for choices), rounded to the
    parameter's grid and kept in range."""
    return {name: nudge(params[name], d, rng) for name, d in search_space.items() if name in params}


def nudge(value: Any, distribution: BaseDistribution, rng: np.random.RandomState) -> Any:
    if isinstance(distribution, CategoricalDistribution):  # a space's choices are numbers: step in their order
        choices = sorted(distribution.choices)
        index = choices.index(value) + rng.normal(0.0, LOCAL_SPREAD * (len(choices) - 1))
        return choices[int(round(min(len(choices) - 1, max(0.0, index))))]
    low, high = distribution.low, distribution.high
    if distribution.log:
        moved = math.exp(math.log(value) + rng.normal(0.0, LOCAL_SPREAD * (math.log(high) - math.log(low))))
    else:
        moved = value + rng.normal(0.0, LOCAL_SPREAD * (high - low))
    if distribution.step is not None:
        moved = low + round((moved - low) / distribution.step) * distribution.step
    moved = min(high, max(low, moved))
    return int(round(moved)) if isinstance(distribution, IntDistribution) else float(moved)


def quiet_study(**kwargs) -> optuna.Study:
    """`optuna.create_study` without Optuna's "A new study created" line, which would
    interrupt the sweep's live view."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(**kwargs)
    finally:
        optuna.logging.set_verbosity(verbosity)


class RungView:
    """An in-memory study of the sweep seen at one rung, kept in step with the sweep's trials.

    A trial with a value at the rung is complete with that value. A trial that ended below
    the rung, or is running but has not yet reached any rung ASHA judges at (just suggested,
    so concurrent suggestions must spread out), is left running, which TPE's constant liar
    counts among the bad examples and never among the good ones. A trial still running past
    a judged rung survived ASHA there: if the view first sees it then (a view made for a new
    rung), it stays out until it reaches this rung or ends. Counted as bad, the survivors,
    which are what several workers spend most of their time on, pushed the sampler away from
    the best region (benchmarks/README.md, "Several workers"). A trial the view already holds
    as a fresh suggestion stays a bad example until it reaches the rung or ends, even once
    it survives a lower rung: withdrawing it measured within noise (benchmarks/README.md,
    "Many workers"). A rung value, once recorded, never changes, so the view only ever adds
    trials or completes running ones.
    """

    def __init__(
        self, step: int, direction: optuna.study.StudyDirection, sampler: TPESampler, rungs: Sequence[int] = ()
    ) -> None:
        self.step = step
        self.rungs = set(rungs)
        self.study = quiet_study(direction=direction, sampler=sampler)
        self.numbers: dict[int, int] = {}  # sweep trial number -> view trial number
        self.valued: set[int] = set()  # sweep trial numbers complete in the view
        self.size = 0  # trials in the view, probes included

    def sync(self, trials: Sequence[FrozenTrial]) -> None:
        added = []
        for trial in trials:
            value = trial.intermediate_values.get(self.step)
            if trial.number not in self.numbers:
                if value is None and self.survivor(trial):
                    continue
                self.numbers[trial.number] = self.size + len(added)
                state = TrialState.RUNNING if value is None else TrialState.COMPLETE
                added.append(
                    optuna.trial.create_trial(
                        state=state, value=value, params=trial.params, distributions=trial.distributions
                    )
                )
            elif value is not None and trial.number not in self.valued:
                self.study.tell(self.numbers[trial.number], value)
            if value is not None:
                self.valued.add(trial.number)
        self.study.add_trials(added)
        self.size += len(added)

    def survivor(self, trial: FrozenTrial) -> bool:
        """Still running, past a judged rung (any reported step when no rungs are known)."""
        if trial.state != TrialState.RUNNING:
            return False
        return (
            any(step in self.rungs for step in trial.intermediate_values)
            if self.rungs
            else bool(trial.intermediate_values)
        )

    def sample(self, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        proposal = self.study.ask(search_space)
        self.study.tell(proposal.number, state=TrialState.FAIL)  # a probe, not an observation
        self.size += 1
        return dict(proposal.params)


def edge_reaching_tpe(seed: int) -> TPESampler:
    """Multivariate TPE whose outermost kernels reach the edge of the range (`consider_endpoints`).

    Each kernel's width is its distance to the farther neighbour; by default the lowest
    and highest observations only look inward, so the density of good configurations
    falls off just past the most extreme one seen. Here the range's ends count as
    neighbours, and the sampler keeps reaching towards an edge that the good trials lean
    to. Good settings often sit at an edge of the space (on LCBench, over the 34 tasks:
    the largest learning rates, the smallest weight decay, the most layers), and this
    alone let ours match random search's result sooner; with the local steps the default
    kernels do as well, within noise, and the edge-reaching ones are kept as they cost
    nothing measurable (benchmarks/README.md, "Edges and a quick climb"). Optuna
    deprecated the argument in 4.9 and will remove it in 6, hence the pin `optuna<6` and
    its warning silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*consider_endpoints.*", category=FutureWarning)
        return TPESampler(seed=seed, multivariate=True, constant_liar=True, n_startup_trials=0, consider_endpoints=True)


class RungTPESampler(BaseSampler):
    """Multivariate TPE fit at the highest rung that enough trials have reached (BOHB-style).

    Until the lowest rung holds `min_observations` values, configurations are drawn at
    random; afterwards TPE is fit at the rung `model_rung` picks. Its good/bad split is
    made among the trials that reached that rung, by their value there; the trials that
    did not reach it (stopped below it, or still running) join the bad examples.

    Every `LOCAL_EVERY`-th trial (by number) that TPE would propose is a local step around
    the `incumbent` instead. TPE's good density is a mixture over all the good trials, so
    most of its proposals fall between them and few close to the very best one. On
    LCBench the steps let one worker and 4 workers alike match random search's result
    with less of the budget (benchmarks/README.md, "Local steps around the incumbent").
    """

    def __init__(
        self,
        search_space: dict[str, BaseDistribution],
        rungs: Sequence[int],
        min_observations: int,
        seed: int,
        histories: Sequence[History] = (),
    ) -> None:
        if min_observations < 1:
            raise ValueError(f"min_observations must be >= 1, got {min_observations}")
        self.search_space = {name: d for name, d in search_space.items() if not d.single()}
        self.rungs = tuple(sorted(rungs))
        self.min_observations = min_observations
        self._random = RandomSampler(seed=seed)
        self._tpe = edge_reaching_tpe(seed)
        self._local = np.random.RandomState(seed)
        self._view: RungView | None = None
        self._prior = None
        if histories:
            study = quiet_study(direction="maximize", sampler=edge_reaching_tpe(seed + 1))
            self._prior = PriorView(histories, self.search_space, study, CLIMB_OBSERVATIONS)
        self._prior_draws = np.random.RandomState(seed + 2)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()
        self._tpe.reseed_rng()
        self._local.seed()
        self._prior_draws.seed()
        if self._prior is not None:
            self._prior.study.sampler.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.search_space  # a sweep's space is fixed: it comes from the search-space file

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        others = [t for t in study.get_trials(deepcopy=False, states=MODEL_STATES) if t.number != trial.number]
        step = model_rung(others, self.rungs, self.min_observations)
        if self._prior is not None and (step is None or trial.number % LOCAL_EVERY != 0):
            own = values_at(others, self.rungs[0] if self.rungs else step)
            if self._prior_draws.rand() < prior_share(own):
                return self._prior.sample()  # the shared parameters; the others are drawn at random
        if step is None:
            return {}
        if self._view is None or self._view.step != step:
            self._view = RungView(step, study.direction, self._tpe, self.rungs)
        self._view.sync(others)
        if trial.number % LOCAL_EVERY == 0:
            best = incumbent(others, study.direction)
            if best is not None:
                return local_step(best.params, search_space, self._local)
        return self._view.sample(search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._random.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._random.after_trial(study, trial, state, values)


def open_study(journal: Path, name: str, sampler: BaseSampler, storage: JournalStorage | None = None) -> optuna.Study:
    """The sweep's study (created or re-opened) in its journal file (or the `storage` opened on it)."""
    storage = storage or JournalStorage(JournalFileBackend(str(journal)))
    return quiet_study(study_name=name, storage=storage, sampler=sampler, direction="maximize", load_if_exists=True)


class TPESearcher(Searcher):
    """Suggests configs from an Optuna study; the first suggestion is the space's defaults.

    `rungs` are the steps ASHA judges trials at (`hpo.search.scheduler.asha_rungs`).
    `startup_trials` is how many values the lowest rung needs before TPE is fit: random
    configurations until then, afterwards the rung `model_rung` picks. `histories`, earlier
    sweeps' trials (a warm start, hpo.search.history), give the first trials after the defaults
    (their best configurations) and a prior that fades as this sweep's values arrive (hpo.search.prior).
    """

    def __init__(
        self,
        space: SearchSpace,
        journal: Path,
        study_name: str,
        seed: int,
        startup_trials: int,
        *,
        rungs: Sequence[int] = (),
        histories: Sequence[History] = (),
    ) -> None:
        super().__init__(metric=METRIC, mode="max")
        self.space = space
        self.journal = Path(journal)
        self.study_name = study_name
        self.seed = seed
        self.startup_trials = startup_trials
        self.rungs = tuple(rungs)
        self.histories = tuple(histories)
        self.live: dict[str, optuna.Trial] = {}  # Ray trial id -> its running Optuna trial
        self.last_step: dict[str, int] = {}  # Ray trial id -> the last step recorded on it
        self.pending: list[int] = []  # Optuna trials a resumed sweep runs again before asking for new ones
        self._study: optuna.Study | None = None
        self._storage: JournalStorage | None = None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._storage = JournalStorage(JournalFileBackend(str(self.journal)))  # kept: it maps numbers to ids
            self._study = open_study(self.journal, self.study_name, self.make_sampler(self.seed), self._storage)
            if not self._study.trials:
                for config in [self.space.defaults(), *warm_configs(self.histories, self.space)]:
                    self._study.enqueue_trial(config)
            else:  # a resumed sweep: a fresh stream, or its first draws would repeat the stopped sweep's
                self._study.sampler = self.make_sampler(self.seed + len(self._study.trials))
        return self._study

    def make_sampler(self, seed: int) -> BaseSampler:
        """The study's sampler: TPE fit at a rung (`RungTPESampler`), with the histories' prior."""
        return RungTPESampler(self.space.distributions(), self.rungs, self.startup_trials, seed, self.histories)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the space comes from the search-space file, not from Ray's param_space

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.pending:
            return self.suggest_again(trial_id, self.pending.pop(0))
        trial = self.study.ask(self.space.distributions())
        trial.set_user_attr(RAY_TRIAL_ID, trial_id)
        trial.set_user_attr(RAY_TRIAL_IDS, [trial_id])
        self.live[trial_id] = trial
        return dict(trial.params)

    def continue_trials(self, numbers: Sequence[int]) -> None:
        """Run these Optuna trials (left running by a stopped sweep) again, before any new one."""
        self.pending = list(numbers)

    def suggest_again(self, trial_id: str, number: int) -> dict[str, Any]:
        """An unfinished trial's own parameters for a new Ray trial; marked to continue it when it
        reached Ray before (its recorded id and checkpoints), else run from the start."""
        trial = self.running_trial(number)
        frozen = self.study.trials[number]
        recorded = frozen.user_attrs.get(RAY_TRIAL_ID)
        trial.set_user_attr(RAY_TRIAL_IDS, [*frozen.user_attrs.get(RAY_TRIAL_IDS, []), trial_id])
        if recorded is None:
            trial.set_user_attr(RAY_TRIAL_ID, trial_id)
        self.live[trial_id] = trial
        self.last_step[trial_id] = max(frozen.intermediate_values, default=-1)
        return {**frozen.params, **({CONTINUES: recorded} if recorded else {})}

    def running_trial(self, number: int) -> optuna.Trial:
        """The study's trial `number`, still running, as an `optuna.Trial` to report on and tell."""
        study = self.study
        storage = self._storage
        study_id = storage.get_study_id_from_name(study.study_name)
        return optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))

    def unfinished(self) -> list[FrozenTrial]:
        """The trials a stopped sweep left running, in the order they were asked."""
        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def ended(self) -> int:
        """How many of the budget's trials have ended."""
        return len(
            self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        )

    def close_live(self) -> None:
        """Trials the Tune run left running when it ended (a time budget stopped it): stopped early."""
        for trial_id in list(self.live):
            self.on_trial_complete(trial_id, None)

    def tell_ended(self, number: int, result: dict | None, error: bool = False) -> None:
        """Tell a trial the stopped sweep ran to its end (its ending recorded, not yet told)."""
        state, value = completion(result, error)
        self.study.tell(number, value, state=state, skip_if_finished=True)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self.live.get(trial_id)
        if trial is not None:
            self._record(trial_id, trial, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        if result and not error:
            self._record(trial_id, trial, result)  # the result ASHA stopped it on reaches only this hook
        self.last_step.pop(trial_id, None)
        state, value = completion(result, error)
        self.study.tell(trial.number, value, state=state, skip_if_finished=True)

    def _record(self, trial_id: str, trial: optuna.Trial, result: dict) -> None:
        """One intermediate value per step; Ray may hand the same result to two hooks."""
        value = result.get(METRIC)
        step = result.get(STEP)
        if value is None or step is None or not math.isfinite(value):
            return
        if int(step) > self.last_step.get(trial_id, -1):
            trial.report(float(value), int(step))
            self.last_step[trial_id] = int(step)

    def save(self, checkpoint_path: str) -> None:
        """Ray's copy of which Ray trial runs which Optuna trial; `hpo resume` reads the study instead."""
        numbers = {trial_id: trial.number for trial_id, trial in self.live.items()}
        Path(checkpoint_path).write_bytes(pickle.dumps({"numbers": numbers}))

    def restore(self, checkpoint_path: str) -> None:
        pass  # the journal is the record: a resumed sweep starts a new Tuner (hpo.run.sweep.resume_sweep)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_study"] = None  # re-opened from the journal file where it is needed
        state["_storage"] = None
        state["live"] = {}  # Optuna trials hold the study
        state["last_step"] = {}
        return state


def completion(result: dict | None, error: bool) -> tuple[TrialState, float | None]:
    """How a finished Ray trial is told to Optuna: complete, pruned (stopped early) or failed.

    No result without an error is a trial stopped before it reported again (a paused
    trial that a scheduler drops): pruned, with whatever it recorded.
    """
    if error:
        return TrialState.FAIL, None
    if not result:
        return TrialState.PRUNED, None
    if result.get(METRIC) is None or not math.isfinite(result[METRIC]):
        return TrialState.FAIL, None
    if result.get(Flag.FINAL):
        return TrialState.COMPLETE, float(result[METRIC])
    return TrialState.PRUNED, None
