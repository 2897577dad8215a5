"""The best rung of a sweep as a recipe that runs standalone, with its adapter.

Works from the run directory alone (spec.yaml, trials.parquet, the checkpoints Ray
kept), so `hpo export RUN_DIR` gives the same answer the sweep wrote at its end. A
checkpoint without its completeness marker (trainers.checkpoints) is never exported.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hpo.errors import InputError
from hpo.guardrails import service_flags, service_values
from hpo.rundir import RunDir, find_checkpoint, is_param_column, row_params
from hpo.tool_configs import write_exports
from trainers.checkpoints import copy_weights
from trainers.data import read_jsonl
from trainers.recipe import Recipe, recipe_from_dict, save_recipe


def best_row(run: RunDir) -> dict[str, Any]:
    """The row with the highest objective.

    Among tied rows, one whose checkpoint Ray kept wins (each trial keeps its top-scoring
    checkpoints, but which of two equal scores survives is Ray's choice), then the
    earliest step (less compute).
    """
    if not run.trials.is_file():
        raise InputError([f"{run.path}: trials.parquet: not found (is this a run directory of `hpo sweep`?)"])
    rows = [r for r in run.read_rows() if r.get("objective") is not None]
    if not rows:
        raise InputError([f"{run.trials}: no trial reported a score; nothing to export"])
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
    they are (never clamped).
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
    flags = {}
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
    write_exports(run.path)  # TRL/PEFT configs, service hyperparameters, alternatives (hpo.tool_configs)
    return run.recipe
