"""The best rung of a sweep as a recipe that runs standalone, with its adapter.

Works from the run directory alone (spec.yaml, state.json, trials.parquet, the checkpoints
Ray kept), so `hpo export RUN_DIR` gives the same answer the sweep wrote at its end. Only a
passing rung is exported (scored and within every limit, hpo.results.rundir.passes): when no trial
has one, `NoPassingTrial` says how they failed and nothing is written. A checkpoint without
its completeness marker (trainers.checkpoints) is never exported. The best rung of a sweep
that has not finished (interrupted, or its driver gone) is exported with `partial: true`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hpo.config.errors import InputError
from hpo.config.service import service_flags, service_values
from hpo.results.rundir import RunDir, Status, SweepState, find_checkpoint, is_param_column, passes, row_params
from hpo.results.tool_configs import write_exports
from trainers.checkpoints import copy_weights
from trainers.data import read_jsonl
from trainers.flags import Flag
from trainers.recipe import Recipe, save_recipe
from trainers.stages import recipe_from_dict


class NoPassingTrial(Exception):
    """The sweep ran, but no trial has a rung to export; `counts` says how the trials failed."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        super().__init__(no_passing_line(counts))


def no_passing_line(counts: dict[str, int]) -> str:
    """`no trial passed (6 trials): 4 over the regression limit, 2 diverged; no best recipe written`."""
    how = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items(), key=lambda item: -item[1]))
    return f"no trial passed ({sum(counts.values())} trials): {how or 'none reported a rung'}; no best recipe written"


def failure(status: str, rows: list[dict[str, Any]]) -> str:
    """How a trial without a passing rung failed: by its ending, else by the limit its rungs broke."""
    if status == Status.DIVERGED:
        return "diverged"
    if status == Status.ERROR:
        return "error"
    violations = [str(row.get(Flag.VIOLATION) or "") for row in rows]
    if any(v.startswith("general regression") for v in violations):
        return "over the regression limit"
    if any(v.startswith("kl ") for v in violations):
        return "over the KL limit"
    if any(row.get(Flag.GUARDRAIL) for row in rows):
        return "stopped by a guardrail"
    return "without a score"


def failure_counts(trials: Iterable[tuple[str, list[dict[str, Any]]]]) -> dict[str, int]:
    """Trials (status, rows) by how they failed."""
    return dict(Counter(failure(status, rows) for status, rows in trials))


def recorded_trials(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """trials.parquet rows grouped by trial, with the trial's status."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["trial_id"], []).append(row)
    return [(trial[0].get("status") or Status.RUNNING, trial) for trial in grouped.values()]


def best_row(run: RunDir) -> dict[str, Any]:
    """The passing row with the highest objective.

    Among tied rows, one whose checkpoint Ray kept wins (each trial keeps its top-scoring
    checkpoints, but which of two equal scores survives is Ray's choice), then the
    earliest step (less compute).
    """
    if not run.trials.is_file():
        raise InputError([f"{run.path}: trials.parquet: not found (is this a run directory of `hpo sweep`?)"])
    recorded = run.read_rows()
    rows = [r for r in recorded if passes(r)]
    if not rows:
        raise NoPassingTrial(failure_counts(recorded_trials(recorded)))
    top = max(r["objective"] for r in rows)
    tied = sorted((r for r in rows if r["objective"] == top), key=lambda r: r["step"])
    kept = [r for r in tied if find_checkpoint(run, r["trial_id"], int(r["step"])) is not None]
    return (kept or tied)[0]


def rung_recipe(spec: dict[str, Any], row: dict[str, Any]) -> Recipe:
    """The recipe that trains `row`'s rung: the sweep's recipe with the trial's hyperparameters,
    stopping at the rung's step, with torch threads matched to the CPUs a trial had."""
    recipe = recipe_from_dict(spec["config"]["recipe"])
    threads = max(1, int(spec["config"]["resources"]["cpu"]))
    training = dataclasses.replace(recipe.training, stop_at_step=int(row["step"]), threads=threads)
    return dataclasses.replace(recipe.with_hyperparameters(row_params(row, drop_null=True)), training=training)


def export_best(run_dir: Path, service_compatible: bool | None = None) -> Path:
    """Write best/recipe.yaml (+ adapter/) and return the recipe's path.

    With `service_compatible` (default: the sweep's guardrails.service_compatible) the
    recipe also lists `service_flags`: values outside the managed service's ranges, as
    they are (never clamped). NoPassingTrial when no rung passed.
    """
    run = RunDir(run_dir)
    row = best_row(run)
    spec = run.read_spec()
    baseline = run.read_baseline()
    run.best.mkdir(exist_ok=True)
    checkpoint = find_checkpoint(run, row["trial_id"], int(row["step"]))
    if checkpoint is not None:
        copy_weights(checkpoint, run.adapter)  # the optimizer and RNG state stay behind
    expected = {k: v for k, v in row.items() if not is_param_column(k) and v is not None}
    recipe = rung_recipe(spec, row)
    if service_compatible is None:
        service_compatible = spec["config"].get("guardrails", {}).get("service_compatible", False)
    flags: dict[str, Any] = {"partial": True} if is_partial(run) else {}
    if service_compatible:
        examples = len(read_jsonl(recipe.data.domain_train))
        flags["service_flags"] = service_flags(service_values(recipe, examples))
    save_recipe(
        run.recipe,
        recipe,
        expected=expected,
        baseline=baseline["metrics"],
        objective=spec["config"]["objective"],
        provenance={
            "spec_hash": spec["spec_hash"],
            "data_sha256": spec["data_sha256"],
            "trial_id": row["trial_id"],
            "step": int(row["step"]),
            "seed": spec["config"]["recipe"]["seed"],
            "adapter": run.adapter.name if checkpoint is not None else None,
        },
        **flags,
    )
    write_exports(run.path)  # TRL/PEFT configs, service hyperparameters, alternatives (hpo.results.tool_configs)
    return run.recipe


def is_partial(run: RunDir) -> bool:
    """Whether the sweep has not finished (interrupted, or its driver gone): its best is the best so far."""
    return run.read_state() != SweepState.FINISHED
