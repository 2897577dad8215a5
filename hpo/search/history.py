"""Earlier sweeps' histories, read for a warm start (`searcher: {warm_start: [...]}`).

A warm start names earlier run directories, or globs of them, relative to the sweep file.
Each must be a finished or interrupted run of the same model, stage and method as this
sweep (a pipeline's run directory stands for its stage of that name): the same stage
scores its domain metric, and so its objective, the same way. Its trials become a `History`: each trial's
hyperparameters, its objective at every rung it reported, and its best passing objective.
The searcher (hpo.search.searcher) turns the histories into the first trials after the defaults
and a prior for TPE. Run directories are read through hpo.results.rundir, which owns their files.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.config.errors import Problems

if TYPE_CHECKING:
    from hpo.results.rundir import RunDir

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class PastTrial:
    """One trial of an earlier sweep: its hyperparameters, its objective at each step it reported,
    and its best objective among the rungs that passed every limit (None: none passed)."""

    params: dict[str, Any]
    values: dict[int, float]
    best: float | None = None


@dataclass(frozen=True)
class History:
    """An earlier sweep's trials, as its searcher saw them (every value to be maximized)."""

    source: str
    trials: tuple[PastTrial, ...]

    def best_trials(self) -> list[PastTrial]:
        """Its trials with a passing rung, best first."""
        passed = [t for t in self.trials if t.best is not None]
        return sorted(passed, key=lambda t: -t.best)


@dataclass(frozen=True)
class Identity:
    """What must match for a history to inform this sweep. The stage fixes which way its domain
    metric goes (held-out perplexity down, answer scores and rewards up), so a history of the same
    stage scores its objective the same way."""

    model: str
    stage: str
    method: str


def warm_start_runs(
    entries: Sequence[str], base: Path, identity: Identity, problems: Problems, key: str
) -> tuple[str, ...]:
    """The run directories `entries` name (paths or globs, relative to `base`), each checked against
    `identity`; a problem for each entry that names none and each run that does not match."""
    from hpo.results.rundir import RunDir  # pyarrow: only for a sweep file that names a warm start

    found: list[str] = []
    for number, entry in enumerate(entries):
        where = f"{key}[{number}]"
        matches = expand(entry, base)
        if not matches:
            problems.add(where, f"no run directory at {entry} (resolved to {base / entry}; give a run directory "
                                "written by `hpo sweep`, or a glob of them)")  # fmt: skip
        for path in matches:
            run = stage_run(RunDir(path), identity.stage)
            problem = mismatch(run, identity)
            if problem:
                problems.add(where, problem)
            elif str(run.path) not in found:
                found.append(str(run.path))
    return tuple(found)


def expand(entry: str, base: Path) -> list[Path]:
    """The folder a path names, or the folders a glob matches, sorted."""
    pattern = base / Path(entry).expanduser()
    if GLOB_CHARACTERS & set(entry):
        return [Path(p).resolve() for p in sorted(glob.glob(str(pattern))) if Path(p).is_dir()]
    return [pattern.resolve()] if pattern.is_dir() else []


def stage_run(run: RunDir, stage: str) -> RunDir:
    """A pipeline's run directory stands for its stage of that name."""
    return run.stage(stage) if run.pipeline.is_file() and run.stage(stage).path.is_dir() else run


def mismatch(run: RunDir, identity: Identity) -> str | None:
    """Why `run` cannot warm-start a sweep of `identity` (None: it can)."""
    if not run.spec.is_file() or not run.trials.is_file():
        return f"{run.path}: spec.yaml or trials.parquet not found (give a run directory written by `hpo sweep`)"
    recipe = run.read_spec()["config"]["recipe"]
    theirs = Identity(str(recipe["model"]), str(recipe["stage"]), str(recipe["method"]))
    for name in ("model", "stage", "method"):
        if getattr(theirs, name) != getattr(identity, name):
            return (
                f"{run.path}: a sweep of {name} {getattr(theirs, name)}, this one's is {getattr(identity, name)} "
                "(warm-start only from sweeps of the same model, stage and method)"
            )
    return None


def read_history(path: Path | str) -> History:
    """A run directory's trials as a History (the trials.parquet rows, grouped by trial)."""
    from hpo.results.rundir import RunDir

    run = RunDir(path)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in run.read_rows():
        grouped.setdefault(row["trial_id"], []).append(row)
    return History(str(run.path), tuple(past_trial(rows) for rows in grouped.values()))


def past_trial(rows: list[dict[str, Any]]) -> PastTrial:
    from hpo.results.rundir import passes, row_params

    values = {int(r["step"]): float(r["objective"]) for r in rows if finite(r.get("objective"))}
    passing = [float(r["objective"]) for r in rows if passes(r) and finite(r["objective"])]
    return PastTrial(row_params(rows[0], drop_null=True), values, max(passing) if passing else None)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
