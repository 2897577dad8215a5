"""LCBench as a tuning problem: the search space, the objective, and the regret scale.

Objective: maximize validation accuracy (percent), observed after every epoch. A run's
incumbent is the best value observed at any epoch of any trial so far, the same rule
by which a sweep exports its best rung.

Normalized regret of an incumbent v on a task: (best - v) / (best - typical), clipped to
[0, 1], where `best` is the highest and `typical` the median best-epoch accuracy among
`SAMPLE_SIZE` random configurations of that task (seeded, cached in reference.json).
0 is the best of 10,000 random configurations (about their 99.99th percentile), 1 is no
better than a typical random configuration. Measured from the worst configuration
instead, every method would score within a few hundredths of 0 (LCBench has diverging
configurations near chance accuracy), hiding the differences this benchmark is about.
A run that beats the sample's best scores 0.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.search.lcbench import LCBench
from hpo.search.space import Parameter, SearchSpace

DEV_TASKS = ("3945", "7593", "34539", "126025", "126026", "146212", "167104", "167149")
REFERENCE_FILE = Path(__file__).with_name("reference.json")
SAMPLE_SIZE = 10_000
BATCH = 250  # configurations per surrogate call


@dataclass(frozen=True)
class Curve:
    """One configuration's learning curve: accuracy after each epoch and that epoch's simulated seconds."""

    accuracy: np.ndarray
    epoch_seconds: np.ndarray


@dataclass(frozen=True)
class Reference:
    best: float
    typical: float  # the median random configuration
    worst: float

    def regret(self, value: float) -> float:
        return float(np.clip((self.best - value) / (self.best - self.typical), 0.0, 1.0))


def lcbench_space(bench: LCBench) -> SearchSpace:
    """LCBench's 7 hyperparameters as the engine's SearchSpace (defaults from the config space)."""
    parameters = tuple(
        Parameter(name, spec["type"], spec["default"], spec["lower"], spec["upper"], spec["log"])
        for name, spec in bench.space.items()
    )
    return SearchSpace("lcbench", "benchmark", "lcbench", parameters)


def curve(bench: LCBench, task: str, config: dict) -> Curve:
    raw = bench.curve(task, config)
    cumulative = raw["time_cummax"]
    return Curve(raw["val_accuracy"], np.diff(cumulative, prepend=0.0))


def random_configs(bench: LCBench, count: int, rng: np.random.Generator) -> list[dict]:
    """Configurations drawn uniformly (log-uniformly where the space says log)."""
    columns = {name: _draw(spec, rng.random(count)) for name, spec in bench.space.items()}
    return [{name: _cast(bench.space[name], columns[name][i]) for name in columns} for i in range(count)]


def _draw(spec: dict, unit: np.ndarray) -> np.ndarray:
    low, high = spec["lower"], spec["upper"]
    if spec["log"]:
        return np.exp(np.log(low) + unit * (np.log(high) - np.log(low)))
    return low + unit * (high - low)


def _cast(spec: dict, value: float) -> int | float:
    value = float(np.clip(value, spec["lower"], spec["upper"]))
    if spec["type"] == "int":
        return int(np.clip(round(value), spec["lower"], spec["upper"]))
    return value


def best_epoch_accuracy(bench: LCBench, task: str, configs: list[dict]) -> np.ndarray:
    scores = [
        bench.curves(task, configs[i : i + BATCH])["val_accuracy"].max(axis=1) for i in range(0, len(configs), BATCH)
    ]
    return np.concatenate(scores)


def compute_reference(bench: LCBench, task: str, seed: int = 0) -> Reference:
    scores = best_epoch_accuracy(bench, task, random_configs(bench, SAMPLE_SIZE, np.random.default_rng(seed)))
    return Reference(best=float(scores.max()), typical=float(np.median(scores)), worst=float(scores.min()))


def load_references(bench: LCBench, tasks: list[str], path: Path = REFERENCE_FILE) -> dict[str, Reference]:
    """Per-task regret scale, computed once per task and cached in `path`."""
    cached = json.loads(path.read_text()) if path.is_file() else {}
    missing = [task for task in tasks if task not in cached]
    for task in missing:
        reference = compute_reference(bench, task)
        cached[task] = asdict(reference)
    if missing:
        path.write_text(json.dumps(dict(sorted(cached.items())), indent=1) + "\n")
    return {task: Reference(**cached[task]) for task in tasks}
