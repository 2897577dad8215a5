"""The Ray side of one trial: runs the stage's trainer and adapts its `report` to `ray.tune.report`.

The trainer stays Ray-free; here each rung's metrics are scored by the composite
objective with the stage's domain metric, and the rung's adapter becomes a Ray
checkpoint. A trial ends early, as a failing final result that Ray never retries, when
training diverges, when an RFT guardrail trips (KL over its limit, a reward blow-up:
`guardrail`) or when the reward cannot be computed (`failed`); `violation` says why.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ray import tune

from hpo.config import Objective
from hpo.guardrails import rung_stop_reason
from hpo.objective import DOMAIN_METRICS, FAILING_OBJECTIVE, score
from trainers.recipe import Recipe


def trainer_for(stage: str):
    """The trainer module of a stage: trainers.sft, trainers.cpt or trainers.rft."""
    return importlib.import_module(f"trainers.{stage}")


def run_trial(config: dict[str, Any], recipe: Recipe, baseline: dict[str, float], objective: Objective) -> None:
    from trainers.rewards import RewardError
    from trainers.sft import Diverged

    trial_recipe = recipe.with_hyperparameters(config)
    rft = recipe.stage == "rft"
    previous: dict[str, dict[str, float]] = {}  # the last rung's metrics, for the blow-up check
    last_step = 0

    def report(step: int, metrics: dict[str, float], checkpoint: Path) -> bool:
        nonlocal last_step
        scored = score(
            metrics,
            baseline,
            objective.general_weight,
            objective.max_general_regression,
            domain=DOMAIN_METRICS[recipe.stage],
            max_kl=objective.max_kl,
        )
        stop = (
            rung_stop_reason(metrics, previous.get("rung"), objective.max_kl, objective.min_length_ratio) if rft else ""
        )
        ending = {"objective": FAILING_OBJECTIVE, "violation": stop, "final": 1.0, "guardrail": 1.0} if stop else {}
        tune.report({**metrics, **scored, **ending}, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)))
        previous["rung"], last_step = metrics, step
        return bool(stop)

    try:
        trainer_for(recipe.stage).train(trial_recipe, report)
    except Diverged as err:
        tune.report(
            {"step": err.step, "objective": FAILING_OBJECTIVE, "final": 1.0, "diverged": 1.0, "violation": str(err)}
        )
    except RewardError as err:
        step = max(err.step, last_step + 1)  # a row of its own, never overwriting a reported rung
        tune.report({"step": step, "objective": FAILING_OBJECTIVE, "final": 1.0, "failed": 1.0, "violation": str(err)})
