"""How long a sweep trains, derived from its data: the field's defaults for epochs, duplication and
warmup, as pure functions (training length from data size: 2 epochs by default, 1 above LARGE_SET
examples; a set below SMALL_SET examples is duplicated, up to MAX_DUPLICATION copies; warmup is a
ratio of the schedule, so it always ends, and the learning rate always peaks, inside it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_EPOCHS = 2


SMALL_SET = 1_000  # fewer examples than this are duplicated


LARGE_SET = 5_000  # more examples than this train for one epoch


MAX_DUPLICATION = 4  # beyond a few copies a small set is memorized rather than learnt


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
