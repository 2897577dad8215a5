"""The methods compared: ours and its peers, each a real Ray searcher paired with a real scheduler.

ours                 what `hpo sweep` runs: TPESearcher (rung seam) + the engine's StrictASHA,
                     as for a sweep bounded by compute, not by a trial count
random               random search, every trial trained in full
tpe                  PrunedTPESearcher (TPESearcher with Optuna's own wiring), every trial
                     trained in full
random+asha          random search + Ray's ASHA (StopRecordingASHA)
random+hyperband     random search + Ray's HyperBandScheduler
tpe+hyperband        PrunedTPESearcher + Ray's HyperBandScheduler
tpe+median           PrunedTPESearcher + Optuna's MedianPruner, as Optuna runs it
ray-optuna+asha      Ray's stock OptunaSearch + Ray's ASHA: a stopped trial is told to TPE
                     as complete with its last (low-fidelity) value
syne-asha           Syne Tune 0.16's ASHA (random search), through its own scheduler API
syne-bohb           Syne Tune 0.16's BOHB (ASHA + kernel density estimators)
syne-dehb           Syne Tune 0.13's DEHB (synchronous Hyperband + differential evolution)
syne-hypertune      Syne Tune 0.13's Hyper-Tune (ASHA + rung-weighted Gaussian processes)
syne-mobster        Syne Tune 0.13's MOBSTER (ASHA + a Gaussian process over configuration and epoch)
ablations:
ours (ray asha)      the rung seam with Ray's stock ASHA: what the scheduler adds
tpe+asha (pruned)    PrunedTPESearcher with Ray's ASHA (stopped trials told as pruned): the
                     engine's wiring before the rung seam

PrunedTPESearcher and StopRecordingASHA live in benchmarks/search/peers.py, the Syne Tune
peers in benchmarks/search/syne.py (the `peers` extra; the syne-* methods are left out of a
run where their release is not installed).

Every ASHA judges at epochs 3, 9, 27 and stops at 52 (GRACE_EPOCHS, REDUCTION_FACTOR;
`--grace` changes the first rung). TPESearcher-based methods share STARTUP_TRIALS; Ray's
OptunaSearch keeps its own default (10).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.samplers import RandomSampler
from ray.tune.schedulers import FIFOScheduler, HyperBandScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from benchmarks.search import syne
from benchmarks.search.backend import Driver, RayDriver
from benchmarks.search.lcbench import N_EPOCHS
from benchmarks.search.peers import PrunedTPESearcher, make_ray_asha
from benchmarks.search.problem import Curve
from hpo.search.history import History
from hpo.search.scheduler import METRIC, STEP, asha_rungs, make_asha
from hpo.search.searcher import TPESearcher
from hpo.search.space import SearchSpace

# ASHA's first rung. On LCBench the accuracy after one epoch says almost nothing about
# the final one (rank correlation with the best-epoch accuracy -0.24..0.27 over the 8
# development tasks; after 3 epochs 0.67..0.89), so every ASHA-family method starts
# judging at epoch 3. Trials still report every epoch.
GRACE_EPOCHS = 3
REDUCTION_FACTOR = 3
STARTUP_TRIALS = 5  # random trials (ours: values at a rung) before TPE models the space
# Ray's Hyperband halves a bracket once it holds its full count of trials; with one trial
# suggested at a time (Ray's default for a searcher) no bracket ever fills and Hyperband
# never stops anything. Suggesting up to the largest bracket's size ahead lets it work.
HYPERBAND_PENDING = 34


@dataclass(frozen=True)
class Method:
    name: str
    searcher: str  # ours | tpe | random | ray-optuna; for Syne Tune, the peer (benchmarks.search.syne)
    scheduler: str  # fifo | strict-asha | asha | hyperband | median; syne: a Syne Tune scheduler does both
    workers: int = 1
    pending: int = 0  # trials suggested ahead of need (see backend.RayDriver.next_trial)

    @property
    def key(self) -> str:
        return self.name if self.workers == 1 else f"{self.name} x{self.workers}"


OURS = Method("ours", "ours", "strict-asha")
PEERS = (
    Method("random", "random", "fifo"),
    Method("tpe", "tpe", "fifo"),
    Method("random+asha", "random", "asha"),
    Method("random+hyperband", "random", "hyperband", pending=HYPERBAND_PENDING),
    Method("tpe+hyperband", "tpe", "hyperband", pending=HYPERBAND_PENDING),
    Method("tpe+median", "tpe", "median"),
    Method("ray-optuna+asha", "ray-optuna", "asha"),
)
SYNE = tuple(Method(f"syne-{peer}", peer, "syne") for peer in ("asha", "bohb", "dehb", "hypertune", "mobster"))
ABLATIONS = (Method("ours (ray asha)", "ours", "asha"), Method("tpe+asha (pruned)", "tpe", "asha"))
PARALLEL = (Method("ours", "ours", "strict-asha", workers=4), Method("random+asha", "random", "asha", workers=4))
ALL = (OURS, *PEERS, *SYNE, *ABLATIONS, *PARALLEL)
# A Gaussian process fit at every suggestion: minutes of CPU a run where ours takes seconds, so the
# search table runs them only when --methods names them (the scaling benchmark runs them at a smaller budget).
SLOW = ("syne-hypertune", "syne-mobster")
BASELINE = "random"  # the budget fraction is measured against full random search's final incumbent


class RandomSearcher(Searcher):
    """Random search over the engine's SearchSpace (Optuna's RandomSampler)."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        super().__init__(metric=METRIC, mode="max")
        self.distributions = space.distributions()
        self.sampler = RandomSampler(seed=seed)
        self.study = optuna.create_study(study_name="random", direction="maximize", sampler=self.sampler)

    def suggest(self, trial_id: str) -> dict:
        trial = self.study.ask(self.distributions)
        self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # random search learns nothing
        return dict(trial.params)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


class MedianPruning(FIFOScheduler):
    """Optuna's MedianPruner on the TPESearcher's study, as `trial.should_prune()` would run it.

    Optuna's loop reports a value and then asks the pruner; here the result is recorded
    on the searcher's trial first (the searcher ignores the same step when Ray hands it on).
    """

    def __init__(self, searcher: TPESearcher) -> None:
        super().__init__()
        self.searcher = searcher
        self.pruner = optuna.pruners.MedianPruner()

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self.searcher.on_trial_result(trial.trial_id, result)
        study = self.searcher.study
        record = study.get_trials(deepcopy=False)[self.searcher.live[trial.trial_id].number]
        return TrialScheduler.STOP if self.pruner.prune(study, record) else TrialScheduler.CONTINUE


def make_driver(
    method: Method,
    space: SearchSpace,
    seed: int,
    workdir: Path,
    grace: int,
    curve_of: Callable[[dict], Curve],
    histories: Sequence[History] = (),
) -> Driver:
    """The method as the simulated backend drives it: a Ray searcher and scheduler, or a Syne Tune scheduler.
    `histories` warm-start ours (no other method takes them)."""
    if histories and method.searcher != "ours":
        raise ValueError(f"only ours is warm-started, got histories for {method.key}")
    if method.scheduler == "syne":
        return syne.make_driver(method.searcher, space, seed, curve_of, N_EPOCHS, grace, REDUCTION_FACTOR)
    searcher = make_searcher(method.searcher, space, seed, workdir, grace, histories)
    return RayDriver(searcher, make_scheduler(method.scheduler, searcher, grace), curve_of, method.pending)


def syne_release(method: Method) -> str | None:
    """The Syne Tune release a method runs on (None for the others)."""
    return syne.release(method.searcher) if method.scheduler == "syne" else None


def available(methods: list[Method]) -> tuple[list[Method], list[str]]:
    """The methods this installation can run, and a line for each left out (a Syne Tune release missing)."""
    kept, missing = [], []
    for method in methods:
        version = syne_release(method)
        if version is None or syne.installed(version):
            kept.append(method)
        else:
            missing.append(f"{method.key}: needs Syne Tune {version} ({syne.INSTALL[version]})")
    return kept, missing


def make_searcher(
    kind: str,
    space: SearchSpace,
    seed: int,
    workdir: Path,
    grace: int = GRACE_EPOCHS,
    histories: Sequence[History] = (),
) -> Searcher:
    rungs = asha_rungs(grace, N_EPOCHS, REDUCTION_FACTOR)
    journal = workdir / "study.journal"
    if kind == "ours":
        return TPESearcher(space, journal, "lcbench", seed, STARTUP_TRIALS, rungs=rungs, histories=histories)
    if kind == "tpe":
        return PrunedTPESearcher(space, journal, "lcbench", seed, STARTUP_TRIALS, rungs=rungs)
    if kind == "random":
        return RandomSearcher(space, seed)
    if kind == "ray-optuna":
        return OptunaSearch(space=space.distributions(), metric=METRIC, mode="max", seed=seed)
    raise ValueError(f"searcher must be one of ours, tpe, random, ray-optuna; got {kind!r}")


def make_scheduler(kind: str, searcher: Searcher, grace: int = GRACE_EPOCHS) -> TrialScheduler:
    if kind == "fifo":
        return FIFOScheduler()
    if kind == "strict-asha":
        return make_asha(N_EPOCHS, grace, REDUCTION_FACTOR)
    if kind == "asha":
        return make_ray_asha(N_EPOCHS, grace, REDUCTION_FACTOR)
    if kind == "hyperband":
        return HyperBandScheduler(
            time_attr=STEP, metric=METRIC, mode="max", max_t=N_EPOCHS, reduction_factor=REDUCTION_FACTOR
        )
    if kind == "median":
        if not isinstance(searcher, TPESearcher):
            raise ValueError(f"median pruning needs a TPESearcher, got {type(searcher).__name__}")
        return MedianPruning(searcher)
    raise ValueError(f"scheduler must be one of fifo, strict-asha, asha, hyperband, median; got {kind!r}")
