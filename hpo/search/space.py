"""Search spaces are data: YAML in search_spaces/, validated into typed parameters.

    parameters:
      learning_rate: {type: float, low: 1.0e-6, high: 1.0e-4, log: true, default: 1.0e-5}
      lora_rank:     {type: choice, values: [16, 32, 64], default: 32}

Every parameter carries the published default; together the defaults form the first
trial, so a sweep is never worse than the recipe it started from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from hpo.config.errors import Problems, unknown_key_message
from hpo.config.reader import Reader, check_range, load_yaml
from trainers.recipe import BOOLEAN_PARAMETERS, Hyperparameters, Limits, integer_names, limits_of, tunable_names
from trainers.stages import DEFAULT_STAGE, METHODS, STAGES, all_tunable_names

PARAMETER_TYPES = ("float", "int", "choice")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    values: tuple[Any, ...] = ()

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.type == "float":
            return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)
        if self.type == "int":
            return optuna.distributions.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=self.step or 1
            )
        return optuna.distributions.CategoricalDistribution(self.values)


@dataclass(frozen=True)
class SearchSpace:
    path: str
    stage: str
    method: str
    parameters: tuple[Parameter, ...]

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {p.name: p.distribution() for p in self.parameters}

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}


def load_space(path: Path, problems: Problems | None = None) -> SearchSpace:
    """Parse and validate a search-space file; problems are collected into `problems`."""
    own = Problems(path)
    document = load_yaml(path, own)
    if own or (document is not None and not isinstance(document, dict)):  # unreadable: nothing more to check
        Reader(document, own)  # reports a document that is not a mapping
        _report(own, problems)
        return SearchSpace(str(path), "", "", ())
    top = Reader(document, own)
    stage = top.text("stage", choices=tuple(STAGES))
    method = top.text("method", choices=METHODS)
    kinds = [s.hyperparameters for s in (STAGES.get(stage, DEFAULT_STAGE), *STAGES.values())]  # its own first
    raw_parameters = top.section("parameters", required=True)
    parameters = []
    tunable = all_tunable_names()
    for name in raw_parameters.data:
        raw_parameters.used.add(name)
        key = f"parameters.{name}"
        if name not in tunable:
            own.add(key, unknown_key_message(name, tunable))
            continue
        kind = next(k for k in kinds if name in tunable_names(k))  # the limits and type of the space's stage's own
        parameters.append(_parameter(name, Reader(raw_parameters.data[name], own, key), kind))
    if document is not None and not parameters and not own:
        own.add("parameters", "must list at least one parameter")
    top.finish()
    _report(own, problems)
    return SearchSpace(str(path), stage, method, tuple(parameters))


def _report(own: Problems, problems: Problems | None) -> None:
    """Raise the space file's problems, or hand them to the caller's collection."""
    if problems is None:
        own.raise_if_any()
    else:
        problems.extend(own)


def _parameter(name: str, spec: Reader, hyperparameters: type[Hyperparameters]) -> Parameter:
    """A parameter checked against the limits and type `hyperparameters` (a stage's dataclass) give it."""
    kind = spec.text("type", choices=PARAMETER_TYPES)
    limits = limits_of(hyperparameters).get(name)  # none for a true-or-false setting
    if kind == "choice":
        return _choice(name, spec, limits, name in integer_names(hyperparameters))
    if name in BOOLEAN_PARAMETERS:
        spec.problems.add(spec.key("type"), f"{name} is true or false: give type: choice, values: [false, true]")
        return Parameter(name, "choice", False, values=(False, True))
    integer = kind == "int" or name in integer_names(hyperparameters)
    low = spec.number("low", integer=integer)
    high = spec.number("high", integer=integer)
    log = spec.flag("log", False)
    step = spec.number("step", None, low=1, integer=True) if kind == "int" else None
    default = spec.number("default", integer=integer)
    spec.finish()
    if low is None or high is None:
        return Parameter(name, kind, default)
    _check_bounds(spec, low, high, log, limits or (None, None, False))
    if default is not None and low <= high and (default < low or default > high):  # else the bounds are the problem
        spec.problems.add(spec.key("default"), f"must lie in [low, high] = [{low:g}, {high:g}], got {default:g}")
    return Parameter(name, kind, default, low, high, log, step)


def _choice(name: str, spec: Reader, limits: Limits | None, integer: bool) -> Parameter:
    values = spec.raw("values")
    default = spec.raw("default")
    spec.finish()
    if not isinstance(values, list) or not values:
        spec.problems.add(spec.key("values"), f"must be a non-empty list, got {values!r}")
        return Parameter(name, "choice", default)
    limit_low, limit_high, low_open = limits or (None, None, False)
    for value in values:
        if name in BOOLEAN_PARAMETERS:
            if not isinstance(value, bool):
                spec.problems.add(spec.key("values"), f"must hold true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            spec.problems.add(spec.key("values"), f"must hold numbers, got {value!r}")
        elif integer and not isinstance(value, int):
            spec.problems.add(spec.key("values"), f"must hold integers, got {value!r}")
        else:
            check_range(spec.problems, spec.key("values"), value, limit_low, limit_high, low_open)
    if default not in values:
        spec.problems.add(spec.key("default"), f"must be one of the values {values}, got {default!r}")
    return Parameter(name, "choice", default, values=tuple(values))


def _check_bounds(spec: Reader, low: float, high: float, log: bool, limits: tuple) -> None:
    if low > high:
        spec.problems.add(spec.key("low"), f"`low <= high` must hold, but got (low={low:g}, high={high:g})")
    limit_low, limit_high, low_open = limits
    if log and low <= 0:  # the one line for low: the limits' `> 0` would say it twice
        spec.problems.add(spec.key("low"), f"must be > 0 for a log range, got {low:g} (raise it or set log: false)")
    else:
        check_range(spec.problems, spec.key("low"), low, limit_low, limit_high, low_open)
    check_range(spec.problems, spec.key("high"), high, limit_low, limit_high, low_open)
