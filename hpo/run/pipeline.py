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
from pathlib import Path
from typing import Any

from ray.tune import Callback

from hpo.config.errors import InputError
from hpo.config.pipeline_file import Pipeline
from hpo.config.sweep_file import SweepConfig
from hpo.judge.outcome import format_metrics
from hpo.results.rundir import RunDir, new_run_dir, write_yaml
from trainers.stages import STAGES, domain_metric

Say = Callable[[str], object]


LiveFactory = Callable[[SweepConfig], Callback | None]


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
    """Baseline, gate, sweep and export for one stage; returns its hpo.run.sweep.Outcome."""
    from hpo.run.baseline import measure_baseline
    from hpo.run.resources import require_resources
    from hpo.run.sweep import prepare, run_sweep, start_ray, trial_recipe

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
