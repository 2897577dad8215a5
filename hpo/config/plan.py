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


def asha_rungs(grace_period: int, max_t: int, reduction_factor: float) -> tuple[int, ...]:
    """The steps ASHA judges trials at (Ray's bracket-0 milestones), followed by `max_t`.

    Ray places milestones at grace_period * reduction_factor**k for k < int(log(max_t / grace)
    / log(reduction_factor) + 1). Trials report every `grace_period` steps (the rung interval),
    so a trial is judged at the first report at or past a milestone; one that survives them
    all runs to max_t.
    """
    if not 0 < grace_period <= max_t:
        raise ValueError(f"`0 < grace_period <= max_t` must hold, but got (grace_period={grace_period}, max_t={max_t})")
    if reduction_factor <= 1:
        raise ValueError(f"reduction_factor must be > 1, got {reduction_factor}")
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    milestones = (grace_period * reduction_factor**k for k in range(count))
    judged = {min(max_t, math.ceil(m / grace_period - 1e-9) * grace_period) for m in milestones}
    return tuple(sorted(judged | {max_t}))
