"""The managed service's limits: a recipe in the service's terms, and the values or search ranges
outside its limits, flagged and never silently clamped (read by hpo validate and the exports)."""

from __future__ import annotations

from collections.abc import Mapping

from hpo.config.plan import warmup_steps
from hpo.config.sweep_file import SweepConfig
from trainers.data import read_jsonl
from trainers.recipe import Recipe
from trainers.stages import STAGES

# The managed service's limits (Bedrock / Nova customization): (low, high) per value.
SERVICE_LIMITS: dict[str, tuple[float, float]] = {
    "epochs": (1, 5),
    "learning_rate": (1e-6, 1e-4),
    "warmup_steps": (0, 100),
}


def service_values(recipe: Recipe, examples: int) -> dict[str, float]:
    """A recipe in the service's terms: epochs over the domain rows, learning rate, warmup steps."""
    hp, training = recipe.hyperparameters, recipe.training
    rows = training.last_step * STAGES[recipe.stage].rows_per_step(training.rows_per_step(), hp)
    return {
        "epochs": round(rows / examples, 2),
        "learning_rate": hp.learning_rate,
        "warmup_steps": warmup_steps(hp.warmup_ratio, training.max_steps),
    }


def service_flags(values: Mapping[str, float]) -> list[str]:
    """One line per value outside the service's range; values are reported as they are, not clamped."""
    flags = []
    for name, (low, high) in SERVICE_LIMITS.items():
        value = values.get(name)
        if value is not None and not low <= value <= high:
            flags.append(f"{name} {value:g} is outside the service range {low:g}..{high:g} (kept as is, not clamped)")
    return flags


def service_range_flags(config: SweepConfig) -> list[str]:
    """What in a sweep reaches outside the service's limits: the first trial's values (the
    defaults, on this schedule) and the search ranges. Such trials export with flags."""
    recipe = config.recipe.with_hyperparameters(config.space.defaults())
    examples = len(read_jsonl(recipe.data.domain_train))
    lines = [f"the first trial: {flag}" for flag in service_flags(service_values(recipe, examples))]
    space = {p.name: p for p in config.space.parameters}
    low, high = SERVICE_LIMITS["learning_rate"]
    rate = space.get("learning_rate")
    if rate is not None and rate.low is not None and rate.high is not None and (rate.low < low or rate.high > high):
        lines.append(f"learning_rate {rate.low:g}..{rate.high:g} reaches outside the service range {low:g}..{high:g}")
    warmup = space.get("warmup_ratio")
    longest = warmup_steps(warmup.high or 0.0, config.scheduler.max_steps) if warmup is not None else 0
    if longest > SERVICE_LIMITS["warmup_steps"][1]:
        lines.append(f"warmup up to {longest} steps reaches past the service's {SERVICE_LIMITS['warmup_steps'][1]:g}")
    return [f"{line} (flagged at export, never clamped)" for line in lines]
