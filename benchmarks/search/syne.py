"""Syne Tune's schedulers as peers, driven through their own scheduler API in the simulated-time backend.

    asha        Syne Tune 0.16 ASHA: random search, asynchronous successive halving
    bohb        Syne Tune 0.16 BOHB: ASHA plus kernel density estimators fit on every trial's
                latest value, a third of the proposals at random
    dehb        Syne Tune 0.13 DEHB: synchronous Hyperband whose brackets above the first breed
                configurations by differential evolution (mutation, crossover) from the rungs below
    hypertune   Syne Tune 0.13 Hyper-Tune: ASHA with a Gaussian process per rung whose predictions
                are weighted by how well each rung ranks the highest one, brackets 3, 9 and 27
    mobster     Syne Tune 0.13 MOBSTER: ASHA with a multi-task Gaussian process over configuration
                and epoch, expected improvement at the rung a new trial is judged at first

Every peer judges at the same rungs as ours (epochs 3, 9, 27; stop at 52; reduction factor
3), stops trials rather than pausing them where it can (asynchronous: `type="stopping"`),
and starts from the space's defaults, as a sweep does (`points_to_evaluate`). DEHB is
synchronous: a trial trains to the epoch its rung names and is paused there, then resumed
when promoted, as Syne Tune runs it with `max_resource_attr`.

Why two versions: ASHA and BOHB are measured on Syne Tune's current release (0.16, the
`peers` extra); DEHB, Hyper-Tune and MOBSTER were removed after 0.13. Both versions are the
package `syne_tune`, so they cannot share one environment: 0.13 is installed into a folder
of its own (`pip install --no-deps --target .peers/syne-tune-0.13 syne-tune==0.13.0`) that
the benchmark puts first on the path of the processes that run those three peers (its
metadata asks for numpy < 1.27, but the three peers run on the engine's numpy 2; autograd,
which its Gaussian processes need, comes with the `peers` extra).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ray.tune.experiment import Trial

from benchmarks.search.backend import SimTrial
from benchmarks.search.problem import Curve
from hpo.search.scheduler import METRIC, STEP
from hpo.search.space import Parameter, SearchSpace

CURRENT = "0.16"  # the release the `peers` extra installs
LEGACY = "0.13"  # the last release with DEHB, Hyper-Tune and MOBSTER
CURRENT_PEERS = ("asha", "bohb")
LEGACY_PEERS = ("dehb", "hypertune", "mobster")
LEGACY_PATH = Path(
    os.environ.get("FORGE_HPO_SYNE_TUNE_013", Path(__file__).resolve().parents[2] / ".peers" / "syne-tune-0.13")
)
INSTALL = {
    CURRENT: "pip install -e '.[peers]'",
    LEGACY: f"pip install -e '.[peers]' && pip install --no-deps --target {LEGACY_PATH} syne-tune==0.13.0",
}
EPOCHS_KEY = "epochs"  # DEHB's config entry naming the epoch a trial trains to (max_resource_attr)


def release(peer: str) -> str:
    """The Syne Tune release a peer is measured on."""
    if peer in CURRENT_PEERS:
        return CURRENT
    if peer in LEGACY_PEERS:
        return LEGACY
    raise ValueError(f"Syne Tune peer must be one of {', '.join(CURRENT_PEERS + LEGACY_PEERS)}; got {peer!r}")


def installed(version: str) -> str | None:
    """The installed Syne Tune version of that release (None when it is not installed), without importing it."""
    if version == CURRENT:
        try:
            found = metadata.version("syne-tune")
        except metadata.PackageNotFoundError:
            return None
    else:
        infos = sorted(LEGACY_PATH.glob("syne_tune-*.dist-info"))
        if not infos:
            return None
        found = infos[-1].name.removeprefix("syne_tune-").removesuffix(".dist-info")
    return found if re.match(rf"{re.escape(version)}(\.|$)", found) else None


@dataclass
class SyneTrial:
    """What a Syne Tune scheduler reads from a trial: its integer id and its configuration."""

    trial_id: int
    config: dict


class SyneDriver:
    """A Syne Tune scheduler, called as Syne Tune's Tuner calls it.

    A free worker runs what `suggest` returns: a new trial (`on_trial_add`), or a paused one
    resumed, possibly with a new configuration. Each result goes to `on_trial_result`; a trial
    the scheduler stops or pauses is removed (`on_trial_remove`), one that reaches its last
    epoch with no such decision completes (`on_trial_complete`). A trial trains to the epoch
    its configuration's `epochs` names (DEHB) or to the curve's end.
    """

    def __init__(
        self, scheduler: Any, suggest: Callable[[int], Any], curve_of: Callable[[dict], Curve], space: SearchSpace
    ) -> None:
        self.scheduler = scheduler
        self.suggest = suggest
        self.curve_of = curve_of
        self.space = space  # the hyperparameters a curve is read from, and their ranges
        self.trials: list[SimTrial] = []
        self.views: dict[str, SyneTrial] = {}

    def next_trial(self) -> SimTrial | None:
        suggestion = self.suggest(len(self.trials))
        if suggestion is None:
            return None
        if not suggestion.spawn_new_trial_id:
            trial = self.trials[suggestion.checkpoint_trial_id]
            if suggestion.config is not None:
                trial.config = self.views[trial.trial_id].config = dict(suggestion.config)
            return trial
        if suggestion.checkpoint_trial_id is not None:
            raise ValueError("a new trial from another trial's checkpoint (population-based training) is not simulated")
        number = len(self.trials)
        config = dict(suggestion.config)
        trial = SimTrial(f"{number:05d}", config, self.curve_of(in_range(config, self.space)))
        self.trials.append(trial)
        self.views[trial.trial_id] = SyneTrial(number, dict(config))
        self.scheduler.on_trial_add(self.views[trial.trial_id])
        return trial

    def report(self, trial: SimTrial, result: dict) -> bool:
        view = self.views[trial.trial_id]
        trial.last_result = result
        decision = self.scheduler.on_trial_result(view, result)
        if decision in ("STOP", "PAUSE"):  # Syne Tune's SchedulerDecision values
            self.scheduler.on_trial_remove(view)
            trial.status = Trial.TERMINATED if decision == "STOP" else Trial.PAUSED
            return False
        if result["final"] or trial.epochs >= view.config.get(EPOCHS_KEY, len(trial.curve.accuracy)):
            self.scheduler.on_trial_complete(view, result)
            trial.status = Trial.TERMINATED
            return False
        return True


def in_range(config: dict, space: SearchSpace) -> dict:
    """The space's hyperparameters of `config`, each moved into its range. Syne Tune 0.16's BOHB can
    propose an integer just outside a log range (its kernel density is not clipped, and the value
    is only rounded); a training script would run it, the surrogate answers only within the ranges,
    so such a trial trains at the nearest value it can answer for."""
    values = {}
    for p in space.parameters:
        value = config[p.name]
        if p.type in ("float", "int"):
            value = min(p.high, max(p.low, value))
        values[p.name] = int(value) if p.type == "int" else value
    return values


def config_space(space: SearchSpace) -> dict:
    """The engine's search space as a Syne Tune configuration space."""
    return {p.name: domain(p) for p in space.parameters}


def domain(parameter: Parameter) -> Any:
    from syne_tune.config_space import choice, lograndint, loguniform, randint, uniform

    if parameter.type == "float":
        return (loguniform if parameter.log else uniform)(parameter.low, parameter.high)
    if parameter.type == "int":
        return (lograndint if parameter.log else randint)(int(parameter.low), int(parameter.high))
    return choice(list(parameter.values))


def make_driver(
    peer: str,
    space: SearchSpace,
    seed: int,
    curve_of: Callable[[dict], Curve],
    max_epochs: int,
    grace: int,
    reduction_factor: float,
) -> SyneDriver:
    """The Syne Tune peer, ready to drive; the process must have that peer's release on its path."""
    with contextlib.redirect_stdout(io.StringIO()):  # 0.13 prints a notice for each extra not installed
        import syne_tune
        import syne_tune.optimizer.baselines  # noqa: F401

    version = release(peer)
    if not syne_tune.__version__.startswith(version):
        raise RuntimeError(
            f"Syne Tune peer {peer!r} needs Syne Tune {version}, this process has {syne_tune.__version__}: "
            f"{INSTALL[version]}"
        )
    scheduler = BUILDERS[peer](config_space(space), space.defaults(), seed, max_epochs, grace, reduction_factor)
    suggest = (lambda number: scheduler.suggest()) if version == CURRENT else scheduler.suggest
    return SyneDriver(scheduler, suggest, curve_of, space)


def _asha(space: dict, defaults: dict, seed: int, max_epochs: int, grace: int, factor: float) -> Any:
    from syne_tune.optimizer.baselines import ASHA

    return ASHA(space, METRIC, STEP, max_epochs, do_minimize=False, random_seed=seed, grace_period=grace,
                reduction_factor=factor, points_to_evaluate=[defaults])  # fmt: skip


def _bohb(space: dict, defaults: dict, seed: int, max_epochs: int, grace: int, factor: float) -> Any:
    from syne_tune.optimizer.baselines import BOHB

    return BOHB(space, METRIC, STEP, max_epochs, do_minimize=False, random_seed=seed, grace_period=grace,
                reduction_factor=factor, points_to_evaluate=[defaults])  # fmt: skip


def _legacy_async(name: str, **extra: Any) -> Callable[..., Any]:
    """A 0.13 asynchronous Hyperband baseline (MOBSTER, HyperTune) with the shared rungs, stopping trials."""

    def build(space: dict, defaults: dict, seed: int, max_epochs: int, grace: int, factor: float) -> Any:
        from syne_tune.optimizer import baselines

        return getattr(baselines, name)(
            space, metric=METRIC, mode="max", resource_attr=STEP, max_t=max_epochs, grace_period=grace,
            reduction_factor=factor, type="stopping", random_seed=seed, points_to_evaluate=[defaults], **extra,
        )  # fmt: skip

    return build


def _dehb(space: dict, defaults: dict, seed: int, max_epochs: int, grace: int, factor: float) -> Any:
    from syne_tune.optimizer.baselines import DEHB

    return DEHB({**space, EPOCHS_KEY: max_epochs}, metric=METRIC, mode="max", resource_attr=STEP,
                max_resource_attr=EPOCHS_KEY, grace_period=grace, reduction_factor=factor, random_seed=seed,
                points_to_evaluate=[defaults])  # fmt: skip


BUILDERS: dict[str, Callable[..., Any]] = {
    "asha": _asha,
    "bohb": _bohb,
    "dehb": _dehb,
    "hypertune": _legacy_async("HyperTune", brackets=3),  # Hyper-Tune samples a bracket per trial: 3, 9 or 27
    "mobster": _legacy_async("MOBSTER"),
}
