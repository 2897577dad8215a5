"""A run directory read back: its trials summarized, their rungs, and the front of recipes worth keeping.

`load_run` reads only what a sweep wrote (spec.yaml, baseline.json, trials.parquet, best/),
so the report, the exports and the W&B summary all name the same trials the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.results.rundir import RunDir, Status, row_params
from trainers.shared import Flag
from trainers.stages import STAGES, DomainMetric, Stage, domain_metric, recipe_from_dict

COMPONENTS = ("objective", "domain_lift", "general_regression", "general_change")


@dataclass(frozen=True)
class TrialSummary:
    """One trial: its best rung (highest objective, earliest on ties), where and why it ended."""

    number: int  # 1, 2, ... in the order trials started
    trial_id: str
    params: dict[str, Any]
    status: str
    stop_reason: str
    last_step: int
    best: dict[str, Any]  # the trials.parquet row of the best rung
    rungs: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class RunRecord:
    path: Path
    spec: dict[str, Any]
    baseline: dict[str, float]
    rows: tuple[dict[str, Any], ...]
    trials: tuple[TrialSummary, ...]
    best: dict[str, Any] | None  # best/recipe.yaml
    test_scores: dict[str, Any] | None  # best/test_scores.json

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stage(self) -> Stage:
        return STAGES[self.spec["config"]["recipe"]["stage"]]

    @property
    def domain(self) -> DomainMetric:
        return domain_metric(recipe_from_dict(self.spec["config"]["recipe"]))

    @property
    def domain_metric(self) -> str:
        return self.domain.name

    @property
    def limit(self) -> float | None:
        return self.spec["config"]["objective"]["max_general_regression"]

    def final_table(self) -> tuple[list[str], list[list[Any]]]:
        """One row per trial: how it ended, its best rung's scores and its parameters."""
        names = sorted({k for t in self.trials for k in t.params})
        columns = ["trial", "trial_id", "status", "last_step", "best_step", *COMPONENTS, "stop_reason", *names]
        rows = [
            [t.number, t.trial_id, t.status, t.last_step, t.best["step"]]
            + [t.best.get(k) for k in COMPONENTS]
            + [t.stop_reason]
            + [t.params.get(k) for k in names]
            for t in self.trials
        ]
        return columns, rows


def load_run(path: Path) -> RunRecord:
    """Read a run directory; raises InputError naming what is missing."""
    run = RunDir(path)
    run.require(run.spec.name, run.baseline.name, run.trials.name)
    rows = tuple(run.read_rows())
    return RunRecord(
        path=run.path,
        spec=run.read_spec(),
        baseline=run.read_baseline()["metrics"],
        rows=rows,
        trials=tuple(summarize_trials(rows)),
        best=run.read_recipe_document(),
        test_scores=run.read_test_scores(),
    )


def summarize_trials(rows: Sequence[dict[str, Any]]) -> list[TrialSummary]:
    """Group trials.parquet rows by trial; trials are numbered in the order they first reported."""
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r.get("trial_started_at") or r.get("recorded_at") or 0.0, r["step"])):
        by_trial.setdefault(row["trial_id"], []).append(row)
    trials = []
    for number, (trial_id, rungs) in enumerate(by_trial.items(), start=1):
        rungs.sort(key=lambda r: r["step"])
        scored = [r for r in rungs if r.get("objective") is not None] or rungs
        best = max(scored, key=lambda r: (objective_of(r), -r["step"]))
        params = row_params(rungs[0])
        last = rungs[-1]
        status, reason = last.get("status") or Status.RUNNING, last.get("stop_reason") or ""
        trials.append(TrialSummary(number, trial_id, params, status, reason, int(last["step"]), best, tuple(rungs)))
    return trials


# --- analysis -----------------------------------------------------------------------------


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (domain_lift, general_regression) points no other point beats on both.

    Lift is maximized and regression minimized; a point is dominated when another is at least
    as good on both and better on one. Non-finite points are never on the front. The indices
    come back by increasing regression, the order a front is drawn in.
    """
    finite = [i for i, (lift, regression) in enumerate(points) if math.isfinite(lift) and math.isfinite(regression)]

    def dominated(i: int) -> bool:
        lift, regression = points[i]
        return any(
            points[j][0] >= lift and points[j][1] <= regression and points[j] != points[i] for j in finite if j != i
        )

    return sorted((i for i in finite if not dominated(i)), key=lambda i: (points[i][1], -points[i][0]))


def feasible_rungs(record: RunRecord) -> list[dict[str, Any]]:
    """Rungs that passed every limit and have both components: the candidates a user could pick."""
    return [
        r
        for r in record.rows
        if not r.get(Flag.VIOLATION) and r.get("domain_lift") is not None and r.get("general_regression") is not None
    ]


def pareto_rungs(record: RunRecord) -> list[dict[str, Any]]:
    """The feasible rungs on the lift/regression front (each rung is a recipe: stop at that step)."""
    candidates = feasible_rungs(record)
    front = pareto_front([(r["domain_lift"], r["general_regression"]) for r in candidates])
    return [candidates[i] for i in front]


def best_rung(record: RunRecord) -> dict[str, Any] | None:
    """The trials.parquet row best/recipe.yaml was exported from."""
    if record.best is None:
        return None
    expected = record.best["expected"]
    rows = (r for r in record.rows if r["trial_id"] == expected["trial_id"] and r["step"] == expected["step"])
    return next(rows, None)


def objective_of(row: dict[str, Any]) -> float:
    """A row's objective; a rung that reported none ranks below every score."""
    objective = row.get("objective")
    return -math.inf if objective is None else objective


def ranked_trials(record: RunRecord) -> list[TrialSummary]:
    """Trials by their best rung's objective, best first."""
    return sorted(record.trials, key=lambda t: -objective_of(t.best))
