"""The Ray side of one trial: adapts a trainer's `report` to `ray.tune.report`.

The trainer stays Ray-free; here each rung's metrics are scored by the composite
objective, and the rung's adapter becomes a Ray checkpoint. A diverging trial ends as
a failing, final result (never an exception Ray would retry).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import tune

from hpo.config import Objective
from hpo.objective import FAILING_OBJECTIVE, score
from trainers.recipe import Recipe


def run_trial(config: dict[str, Any], recipe: Recipe, baseline: dict[str, float], objective: Objective) -> None:
    from trainers.sft import Diverged, train

    trial_recipe = recipe.with_hyperparameters(config)

    def report(step: int, metrics: dict[str, float], checkpoint: Path) -> None:
        scored = score(metrics, baseline, objective.general_weight, objective.max_general_regression)
        tune.report({**metrics, **scored}, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)))

    try:
        train(trial_recipe, report)
    except Diverged as err:
        tune.report(
            {"step": err.step, "objective": FAILING_OBJECTIVE, "final": 1.0, "diverged": 1.0, "violation": str(err)}
        )
