"""The best rung of a sweep as a recipe that runs standalone, with its adapter.

Works from the run directory alone (spec.yaml, trials.parquet, the checkpoints Ray
kept), so `hpo export RUN_DIR` gives the same answer the sweep wrote at its end. A
checkpoint without its completeness marker (trainers.checkpoints) is never exported.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from hpo.errors import InputError
from hpo.exports import write_exports
from hpo.guardrails import service_flags, service_values
from hpo.records import read_rows
from trainers.checkpoints import checkpoint_step, copy_weights
from trainers.data import read_jsonl
from trainers.recipe import Recipe, recipe_from_dict, save_recipe

PARAM_PREFIX = "param_"


def best_row(run_dir: Path) -> dict[str, Any]:
    """The row with the highest objective.

    Among tied rows, one whose checkpoint Ray kept wins (each trial keeps its top-scoring
    checkpoints, but which of two equal scores survives is Ray's choice), then the
    earliest step (less compute).
    """
    table = run_dir / "trials.parquet"
    if not table.is_file():
        raise InputError([f"{run_dir}: trials.parquet: not found (is this a run directory of `hpo sweep`?)"])
    rows = [r for r in read_rows(table) if r.get("objective") is not None]
    if not rows:
        raise InputError([f"{table}: no trial reported a score; nothing to export"])
    top = max(r["objective"] for r in rows)
    tied = sorted((r for r in rows if r["objective"] == top), key=lambda r: r["step"])
    kept = [r for r in tied if find_checkpoint(run_dir, r["trial_id"], int(r["step"])) is not None]
    return (kept or tied)[0]


def trial_checkpoints(tune_dir: Path, trial_id: str) -> list[Path]:
    """The checkpoint folders of a trial (Ray's layout: tune/<trainable>_<trial id>_<...>/checkpoint_NNNNNN)."""
    return sorted(tune_dir.glob(f"*_{trial_id}_*/checkpoint_*"))


def find_checkpoint(run_dir: Path, trial_id: str, step: int) -> Path | None:
    """The kept, complete checkpoint folder of `trial_id` at `step` (Ray's layout under tune/)."""
    for folder in trial_checkpoints(run_dir / "tune", trial_id):
        if checkpoint_step(folder) == step:
            return folder
    return None


def best_recipe(run_dir: Path, row: dict[str, Any]) -> Recipe:
    spec = yaml.safe_load((run_dir / "spec.yaml").read_text())
    recipe = recipe_from_dict(spec["config"]["recipe"])
    params = {k[len(PARAM_PREFIX) :]: v for k, v in row.items() if k.startswith(PARAM_PREFIX) and v is not None}
    threads = max(1, int(spec["config"]["resources"]["cpu"]))
    training = dataclasses.replace(recipe.training, stop_at_step=int(row["step"]), threads=threads)
    return dataclasses.replace(recipe.with_hyperparameters(params), training=training)


def export_best(run_dir: Path, service_compatible: bool | None = None) -> Path:
    """Write best/recipe.yaml (+ adapter/) and return the recipe's path.

    With `service_compatible` (default: the sweep's guardrails.service_compatible) the
    recipe also lists `service_flags`: values outside the managed service's ranges, as
    they are (never clamped).
    """
    run_dir = Path(run_dir)
    row = best_row(run_dir)
    spec = yaml.safe_load((run_dir / "spec.yaml").read_text())
    baseline = json.loads((run_dir / "baseline.json").read_text())
    best = run_dir / "best"
    best.mkdir(exist_ok=True)
    checkpoint = find_checkpoint(run_dir, row["trial_id"], int(row["step"]))
    if checkpoint is not None:
        copy_weights(checkpoint, best / "adapter")  # the optimizer and RNG state stay behind
    expected = {k: v for k, v in row.items() if not k.startswith(PARAM_PREFIX) and v is not None}
    recipe = best_recipe(run_dir, row)
    if service_compatible is None:
        service_compatible = spec["config"].get("guardrails", {}).get("service_compatible", False)
    flags = {}
    if service_compatible:
        examples = len(read_jsonl(recipe.data.domain_train))
        flags["service_flags"] = service_flags(service_values(recipe, examples))
    save_recipe(
        best / "recipe.yaml",
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
            "adapter": "adapter" if checkpoint is not None else None,
        },
        **flags,
    )
    write_exports(run_dir)  # TRL/PEFT configs, service hyperparameters, alternatives (hpo.exports)
    return best / "recipe.yaml"
