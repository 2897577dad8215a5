"""Stage pipelines: sweeps run in order, each stage starting from the best of the one before.

    name: supersense3-chain
    model: smollm2-135m-instruct
    stages: [sft, rft]
    data: {...}            # top-level keys are every stage's settings ...
    task: {...}
    sft: {search_space: sft_lora, scheduler: {...}}        # ... and a stage's section overrides them,
    rft: {data: {general_mix: null}, task: {reward: ...}}  # merged one level deep (null removes a key)

A later stage starts from the earlier stage's best rung: a LoRA adapter is merged into
the base model (`recipe.start_adapters`) and the stage trains a fresh adapter on top, so
its baseline, its KL reference and its exported recipe all start where the earlier
stage ended; a `method: full` stage hands on its whole model (`recipe.model`).

    RUN/pipeline.yaml     the pipeline file as given
    RUN/stages/<stage>/   each stage's complete run directory (spec, baseline, trials, best/)
    RUN/chain.yaml        which recipe fed which, and the final recipe

The same module runs a single sweep's gate: `check_start` refuses a stage whose gate
(`Stage.start_gate`; RFT's: the positive-reward rate) the starting model does not pass,
before any run directory exists.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback

from hpo.config import SweepConfig, overlay, sweep_from_document
from hpo.errors import InputError, Problems
from hpo.guardrails import (
    SERVICE_LIMITS,
    service_flags,
    service_values,
    warmup_before_first_rung,
    warmup_steps,
)
from hpo.outcome import format_metrics
from hpo.reader import load_yaml
from hpo.rundir import RunDir, new_run_dir, write_yaml
from hpo.scheduler import asha_rungs
from trainers.data import read_jsonl
from trainers.stages import STAGES, domain_metric

Say = Callable[[str], object]
LiveFactory = Callable[[SweepConfig], Callback | None]
SHARED_ONLY = ("name", "stages", "output_dir")  # pipeline-wide keys a stage section cannot set


@dataclass(frozen=True)
class Pipeline:
    path: str
    name: str
    stages: tuple[SweepConfig, ...]
    output_dir: str


def is_pipeline(path: Path) -> bool:
    """Whether a sweep file lists `stages` (checked without validating anything else)."""
    problems = Problems(path)
    document = load_yaml(Path(path), problems)
    return isinstance(document, dict) and "stages" in document


def stage_document(document: dict[str, Any], stage: str) -> dict[str, Any]:
    """The sweep document of one stage: top-level keys, overridden one level deep by the stage's section."""
    shared = {k: v for k, v in document.items() if k not in ("stages", *STAGES)}
    merged = overlay(shared, document.get(stage) or {})
    merged["name"] = f"{document.get('name') or 'pipeline'}-{stage}"
    merged["stage"] = stage
    return merged


def load_pipeline(path: Path | str) -> Pipeline:
    """Parse and validate every stage of a pipeline file; raises InputError listing every problem."""
    path = Path(path)
    problems = Problems(path)
    document = load_yaml(path, problems)
    problems.raise_if_any()
    if not isinstance(document, dict):
        problems.add("(top level)", f"must be a mapping of keys to values, got {type(document).__name__}")
        problems.raise_if_any()
    stages = document.get("stages")
    if not isinstance(stages, list) or not stages or not all(s in STAGES for s in stages):
        problems.add("stages", f"must be a non-empty list of {', '.join(STAGES)}, got {stages!r}")
    elif len(set(stages)) != len(stages):
        problems.add("stages", f"must not repeat a stage, got {stages}")
    for key in ("stage", *(s for s in STAGES if s in document and s not in (stages or []))):
        if key in document:
            problems.add(key, f"is not allowed in a pipeline (stages come from `stages`: {stages})")
    for stage in stages if isinstance(stages, list) else []:
        section = document.get(stage) or {}
        if not isinstance(section, dict):
            problems.add(stage, f"must be a mapping of the stage's settings, got {type(section).__name__}")
        for key in (*SHARED_ONLY, "stage"):
            if isinstance(section, dict) and key in section:
                problems.add(f"{stage}.{key}", "is pipeline-wide: set it at the top level (remove it here)")
    problems.raise_if_any()
    configs = []
    for stage in stages:
        stage_problems = Problems(f"{path} [{stage}]")
        configs.append(sweep_from_document(stage_document(document, stage), path, stage_problems))
        problems.extend(stage_problems)
    problems.raise_if_any()
    output_dir = str(Path(configs[0].output_dir).resolve())
    return Pipeline(str(path.resolve()), str(document.get("name") or path.stem), tuple(configs), output_dir)


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


def check_start(config: SweepConfig, metrics: dict[str, float], allow_low_reward: bool) -> list[str]:
    """Warnings about the starting model; raises InputError when the stage must not start from it."""
    allowed = allow_low_reward or config.guardrails.allow_low_reward
    stage = STAGES[config.recipe.stage]
    refusal, warning = stage.start_gate(metrics, config.recipe.probes.domain_examples, allowed)
    if refusal:
        raise InputError([f"{config.path}: {refusal}"])
    return [warning] if warning else []


def run_stage(
    config: SweepConfig,
    run_dir: Path | None,
    allow_low_reward: bool,
    say: Say,
    live: Callback | None,
    signals: Any = None,
) -> Any:
    """Baseline, gate, sweep and export for one stage; returns its hpo.sweep.Outcome."""
    from hpo.baseline import measure_baseline
    from hpo.resources import require_resources
    from hpo.sweep import prepare, run_sweep, start_ray, trial_recipe

    say(f"measuring the starting model {config.recipe.model} on the {config.recipe.stage} probes ...")
    baseline = measure_baseline(trial_recipe(config))
    say(format_metrics("baseline", baseline["metrics"]))
    for line in check_start(config, baseline["metrics"], allow_low_reward):
        say(f"warning: {line}")
    start_ray(config)
    require_resources(config, say)
    run_dir, baseline = prepare(config, baseline, run_dir)
    outcome = run_sweep(config, run_dir, baseline, live, signals)
    if outcome.passed:
        say(format_metrics("best (validation)", RunDir(run_dir).read_recipe_document()["expected"]))
    return outcome


def starting_from(config: SweepConfig, previous: SweepConfig, previous_run: Path) -> SweepConfig:
    """`config` starting from the best rung of the previous stage's run."""
    best = str(RunDir(previous_run).adapter.resolve())
    if previous.recipe.method == "full":  # the checkpoint is the whole model, earlier adapters included
        recipe = dataclasses.replace(config.recipe, model=best, start_adapters=())
    else:  # the adapter was trained on the previous start: merge that first, then the adapter
        start = (*previous.recipe.start_adapters, best)
        recipe = dataclasses.replace(config.recipe, model=previous.recipe.model, start_adapters=start)
    return dataclasses.replace(config, recipe=recipe)


def run_pipeline(
    pipeline: Pipeline,
    allow_low_reward: bool,
    say: Say,
    live: LiveFactory = lambda config: None,
    signals: Any = None,
) -> tuple[Path, Any]:
    """Run every stage in order; returns the pipeline's run directory (with chain.yaml) and the
    outcome of the last stage that ran: a stage interrupted, or without a passing trial, ends it."""
    run = new_run_dir(pipeline.output_dir, pipeline.name)
    run_dir = run.path
    shutil.copyfile(pipeline.path, run.pipeline)
    chain: list[dict[str, Any]] = []
    previous: tuple[SweepConfig, Path] | None = None
    outcome = None
    for config in pipeline.stages:
        if previous is not None:
            config = starting_from(config, *previous)
        stage = config.recipe.stage
        say(f"== stage {stage} ({config.recipe.method}) ==")
        outcome = run_stage(config, run.stage(stage).path, allow_low_reward, say, live(config), signals)
        if not outcome.passed:
            say(f"stage {stage} ended without a best recipe; the stages after it are not run")
            break
        chain.append(chain_link(config, outcome.run_dir, run_dir))
        write_chain(run_dir, chain)
        previous = (config, outcome.run_dir)
    return run_dir, outcome


def chain_link(config: SweepConfig, stage_dir: Path, run_dir: Path) -> dict[str, Any]:
    stage_run = RunDir(stage_dir)
    best = stage_run.read_recipe_document()
    shown = ("trial_id", "step", "objective", "domain_lift", domain_metric(config.recipe).name)
    return {
        "stage": config.recipe.stage,
        "method": config.recipe.method,
        "run_dir": str(stage_dir.relative_to(run_dir)),
        "started_from": {"model": config.recipe.model, "adapters": list(config.recipe.start_adapters)},
        "baseline": best["baseline"],
        "best_recipe": str(stage_run.recipe.relative_to(run_dir)),
        "best": {k: best["expected"].get(k) for k in shown},
    }


def write_chain(run_dir: Path, chain: list[dict[str, Any]]) -> None:
    write_yaml(RunDir(run_dir).chain, {"stages": chain, "final_recipe": chain[-1]["best_recipe"]})
