"""A warm start's two uses of earlier sweeps (hpo.search.history): first trials, and a prior for TPE.

- `warm_configs`: each earlier sweep's best configuration, moved into this sweep's space,
  tried right after the published defaults.
- `PriorView`: the earlier sweeps' trials as one fixed TPE study. The searcher draws a
  proposal from it instead of from its own model with probability `prior_share`, which
  falls as this sweep's own values arrive (half at PRIOR_OBSERVATIONS values at the lowest
  rung), so a history from an unrelated task cannot hold the search back for long.

Each history is modelled at its highest step holding `climb` values (as the sweep's own
model climbs, hpo.search.searcher.model_rung), its values there replaced by their rank
within the history, in (0, 1]: sweeps of other tasks score on other scales, and TPE needs
only the order. Its trials that stopped below that step count as bad examples. Only the
parameters this sweep's space shares with a history are modelled; the others are drawn at
random, and a trial with a value outside this space's range is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from hpo.search.history import History, PastTrial
from hpo.search.space import Parameter, SearchSpace

PRIOR_OBSERVATIONS = 10  # own values at the lowest rung at which the prior is drawn from half the time


def prior_share(own_values: int) -> float:
    """The probability of drawing from the prior with `own_values` values at the lowest rung."""
    return PRIOR_OBSERVATIONS / (PRIOR_OBSERVATIONS + own_values)


def warm_configs(histories: Sequence[History], space: SearchSpace) -> list[dict[str, Any]]:
    """Each history's best configuration (in the order given), moved into `space`; repeats and the
    defaults themselves left out."""
    configs: list[dict[str, Any]] = []
    for history in histories:
        best = history.best_trials()
        config = fit_to_space(best[0].params, space) if best else None
        if config is not None and config != space.defaults() and config not in configs:
            configs.append(config)
    return configs


def fit_to_space(params: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """`params` as a configuration of `space`: a parameter it lacks takes the default, a value
    outside the range the nearest one inside it (the nearest choice, on the step grid)."""
    return {p.name: nearest(p, params[p.name]) if p.name in params else p.default for p in space.parameters}


def nearest(parameter: Parameter, value: Any) -> Any:
    if parameter.type == "choice":
        if value in parameter.values:
            return value
        numbers = [v for v in parameter.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numbers or not isinstance(value, (int, float)):
            return parameter.default
        return min(numbers, key=lambda v: abs(v - value))
    moved = min(parameter.high, max(parameter.low, float(value)))
    if parameter.step:
        moved = parameter.low + round((moved - parameter.low) / parameter.step) * parameter.step
    return int(round(moved)) if parameter.type == "int" else moved


def inside(distribution: BaseDistribution, value: Any) -> bool:
    """Whether `value` is a value of `distribution`."""
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    return isinstance(value, (int, float)) and distribution.low <= value <= distribution.high


def modelled_step(trials: Sequence[PastTrial], climb: int) -> int | None:
    """The highest step at least `climb` of `trials` reported (the lowest when none has that many)."""
    counts: dict[int, int] = {}
    for trial in trials:
        for step in trial.values:
            counts[step] = counts.get(step, 0) + 1
    if not counts:
        return None
    enough = [step for step, count in counts.items() if count >= climb]
    return max(enough) if enough else min(counts)


def ranks(values: Sequence[float]) -> list[float]:
    """Each value's rank among `values`, in (0, 1], the highest 1 (ties share the lower rank)."""
    ordered = sorted(values)
    return [(ordered.index(v) + 1) / len(values) for v in values]


class PriorView:
    """The histories' trials as one fixed `study` (empty, with a TPE sampler, to maximize), over the
    parameters this sweep shares with them; each history modelled at its highest step with `climb` values."""

    def __init__(
        self,
        histories: Sequence[History],
        distributions: dict[str, BaseDistribution],
        study: optuna.Study,
        climb: int,
    ) -> None:
        shared = {name for history in histories for trial in history.trials for name in trial.params}
        self.distributions = {name: d for name, d in distributions.items() if name in shared and not d.single()}
        self.climb = climb
        self.study = study
        self.study.add_trials([t for history in histories for t in self.frozen_trials(history)])

    def frozen_trials(self, history: History) -> list[optuna.trial.FrozenTrial]:
        trials = [t for t in history.trials if self.fits(t)]
        step = modelled_step(trials, self.climb)
        if step is None:
            return []
        valued = [t for t in trials if step in t.values]
        rank = dict(zip(map(id, valued), ranks([t.values[step] for t in valued])))
        return [self.frozen(t, rank.get(id(t))) for t in trials]

    def fits(self, trial: PastTrial) -> bool:
        return all(inside(d, trial.params[name]) for name, d in self.distributions.items() if name in trial.params)

    def frozen(self, trial: PastTrial, value: float | None) -> optuna.trial.FrozenTrial:
        """A trial with a rank is complete with it; one without is left running: a bad example."""
        params = {name: trial.params[name] for name in self.distributions if name in trial.params}
        return optuna.trial.create_trial(
            state=TrialState.COMPLETE if value is not None else TrialState.RUNNING,
            value=value,
            params=params,
            distributions={name: self.distributions[name] for name in params},
        )

    def sample(self) -> dict[str, Any]:
        """A proposal for the shared parameters (empty when the histories hold no trials)."""
        if not self.distributions or not self.study.trials:
            return {}
        proposal = self.study.ask(self.distributions)
        self.study.tell(proposal.number, state=TrialState.FAIL)  # a probe, not an observation
        return dict(proposal.params)
