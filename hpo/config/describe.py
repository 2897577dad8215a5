"""What hpo validate shows for one sweep besides its problems: the data-size plan and the
guardrails' warnings."""

from __future__ import annotations

from hpo.config.plan import asha_rungs, warmup_before_first_rung
from hpo.config.service import service_range_flags
from hpo.config.sweep_file import SweepConfig


def describe(config: SweepConfig) -> list[str]:
    """Lines `hpo validate` shows for one sweep: the data-size plan and any guardrail warnings."""
    lines = []
    plan = config.plan
    if plan is not None:
        lines.append(
            f"training plan: {plan.examples} examples x {plan.duplication} copies x {plan.epochs} epochs "
            f"= {plan.max_steps} steps (warmup {plan.warmup_steps} steps at the default ratio)"
        )
    warmup = next((p for p in config.space.parameters if p.name == "warmup_ratio"), None)
    if warmup is not None and warmup.high is not None:
        scheduler = config.scheduler
        first_rung = asha_rungs(scheduler.rung_interval, scheduler.max_steps, scheduler.reduction_factor)[0]
        line = warmup_before_first_rung(warmup.high, scheduler.max_steps, first_rung)
        lines += [f"warning: {line}"] if line else []
    if config.guardrails.service_compatible:
        lines += [f"warning: {line}" for line in service_range_flags(config)]
    return lines
