"""The field's guardrails, as pure functions the engine calls and the tests drive directly.

- Training length from data size: 2 epochs by default, 1 above LARGE_SET examples; a
  set below SMALL_SET examples is duplicated (up to MAX_DUPLICATION copies) so that it
  gets more effective passes; warmup is a ratio of the schedule, so it always ends,
  and the learning rate always peaks, inside it.
- Reward blow-up: a rung whose training reward rises while the completions collapse in
  length looks like reward hacking, and the trial is stopped.
- Service-compatible ranges: values outside the managed service's limits are flagged,
  never silently clamped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hpo.objective import kl_violation
from trainers.recipe import Recipe
from trainers.stages import STAGES

DEFAULT_EPOCHS = 2
SMALL_SET = 1_000  # fewer examples than this are duplicated
LARGE_SET = 5_000  # more examples than this train for one epoch
MAX_DUPLICATION = 4  # beyond a few copies a small set is memorized rather than learnt
# The managed service's limits (Bedrock / Nova customization): (low, high) per value.
SERVICE_LIMITS: dict[str, tuple[float, float]] = {
    "epochs": (1, 5),
    "learning_rate": (1e-6, 1e-4),
    "warmup_steps": (0, 100),
}


@dataclass(frozen=True)
class TrainingPlan:
    """How long to train, derived from the number of training examples."""

    examples: int
    epochs: int
    duplication: int
    max_steps: int
    warmup_steps: int  # at the default warmup ratio


def training_plan(
    examples: int,
    rows_per_step: float,
    warmup_ratio: float,
    epochs: int | None = None,
    duplication: int | None = None,
) -> TrainingPlan:
    """Epochs, duplication, optimizer steps and warmup steps for `examples` training rows.

    `rows_per_step` is how many of those rows one optimizer step consumes (batch x grad
    accumulation, times the domain share of a mixed batch, or divided by the generations
    per prompt for RFT). `epochs` and `duplication` override the defaults.
    """
    if examples < 1 or rows_per_step <= 0:
        raise ValueError(f"examples >= 1 and rows_per_step > 0 must hold, got ({examples}, {rows_per_step})")
    if epochs is None:
        epochs = 1 if examples > LARGE_SET else DEFAULT_EPOCHS
    if duplication is None:
        duplication = min(MAX_DUPLICATION, math.ceil(SMALL_SET / examples)) if examples < SMALL_SET else 1
    max_steps = max(1, math.ceil(examples * duplication * epochs / rows_per_step))
    return TrainingPlan(examples, epochs, duplication, max_steps, warmup_steps(warmup_ratio, max_steps))


def warmup_steps(warmup_ratio: float, max_steps: int) -> int:
    """Warmup steps for a ratio of the schedule, computed as the trainers do (rounded up)."""
    return math.ceil(warmup_ratio * max_steps)


def reward_blowup(
    current: Mapping[str, float], previous: Mapping[str, float] | None, min_length_ratio: float | None
) -> str:
    """Why this rung looks like reward hacking (reward up, completion length collapsed), or empty."""
    if min_length_ratio is None or previous is None:
        return ""
    keys = ("train_reward_mean", "train_completion_length")
    if not all(k in current and k in previous for k in keys):
        return ""
    reward_before, reward_now = previous["train_reward_mean"], current["train_reward_mean"]
    length_before, length_now = previous["train_completion_length"], current["train_completion_length"]
    if reward_now > reward_before and length_now < min_length_ratio * length_before:
        return (
            f"reward blow-up: training reward {reward_before:.3g} -> {reward_now:.3g} while completion length "
            f"fell {length_before:.3g} -> {length_now:.3g} tokens (< {min_length_ratio:g} of the previous rung)"
        )
    return ""


def rung_stop_reason(
    current: Mapping[str, float],
    previous: Mapping[str, float] | None,
    max_kl: float | None,
    min_length_ratio: float | None,
) -> str:
    """Why an RFT trial must stop at this rung (KL over its limit, or a reward blow-up), or empty."""
    return kl_violation(current, max_kl) or reward_blowup(current, previous, min_length_ratio)


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


def warmup_before_first_rung(warmup_ratio_high: float, max_steps: int, first_rung: int) -> str:
    """A warning when the longest warmup the space allows ends after ASHA's first judgement.

    ASHA compares trials at the first rung; a trial still warming up there is judged
    before its learning rate has peaked.
    """
    longest = warmup_steps(warmup_ratio_high, max_steps)
    if longest <= first_rung:
        return ""
    return (
        f"warmup up to {longest} steps (warmup_ratio {warmup_ratio_high:g} of {max_steps}) ends after the first "
        f"ASHA rung at step {first_rung}: such trials are judged before their learning rate peaks"
    )
