"""Training throughput inside a sweep trial vs a standalone TRL run of the same recipe.

    python -m benchmarks.trial_throughput [--sweep demo/supersense3.yaml] [--steps 20]

Runs one real trial through the engine (embedded Ray, the sweep's first recipe = the
published defaults, every CPU given to it) and the same recipe with TRL's SFTTrainer
alone (no engine, no probes), then reports:

- tokens/s in the trial vs standalone (goal: ratio >= 0.95),
- per-trial overhead = (trial wall time - training - probes) / trial wall time (goal <= 5%),
- probe cost as a share of trial wall time.

Trial wall time runs from the driver starting the trial to its last rung reaching the
driver, so it includes the worker's model load and dataset preparation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
from datasets import Dataset
from transformers import PrinterCallback, set_seed
from trl import SFTTrainer

from hpo.config import Budget, Resources, Scheduler, SweepConfig, load_sweep
from hpo.sweep import prepare, run_sweep
from trainers.models import load_base
from trainers.recipe import Recipe
from trainers.sft import lora_config, sft_config, training_rows

RATIO_GOAL = 0.95
OVERHEAD_GOAL = 0.05


def benchmark_config(config: SweepConfig, steps: int, cpus: int, output_dir: str) -> SweepConfig:
    """One trial of the defaults, all CPUs, two rungs, results in a scratch folder."""
    recipe = config.recipe.with_hyperparameters(config.space.defaults())
    training = dataclasses.replace(recipe.training, max_steps=steps, rung_interval=steps // 2)
    return dataclasses.replace(
        config,
        name=f"{config.name}-throughput",
        recipe=dataclasses.replace(recipe, training=training),
        budget=Budget(trials=1, concurrency=1),
        resources=Resources(cpu=cpus, gpu=0),
        scheduler=Scheduler(
            rung_interval=steps // 2, max_steps=steps, reduction_factor=config.scheduler.reduction_factor
        ),
        output_dir=output_dir,
    )


def trial_figures(config: SweepConfig) -> dict:
    run_dir, baseline = prepare(config)
    run_sweep(config, run_dir, baseline)
    last = pq.read_table(run_dir / "trials.parquet").to_pylist()[-1]
    wall = last["recorded_at"] - last["trial_started_at"]
    return {
        "tokens": last["tokens_seen"],
        "train_seconds": last["train_seconds"],
        "probe_seconds": last["probe_seconds"],
        "wall_seconds": wall,
        "tokens_per_second": last["tokens_seen"] / last["train_seconds"],
    }


def standalone_figures(recipe: Recipe, threads: int) -> dict:
    """The same recipe with TRL alone: no engine, no rung probes."""
    torch.set_num_threads(threads)
    set_seed(recipe.seed)
    model, tokenizer = load_base(recipe.model)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = SFTTrainer(
            model=model,
            args=sft_config(recipe, Path(scratch)),
            train_dataset=Dataset.from_list(training_rows(recipe)),
            processing_class=tokenizer,
            peft_config=lora_config(recipe),
        )
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    tokens = float(trainer.state.num_input_tokens_seen)
    return {"tokens": tokens, "train_seconds": seconds, "tokens_per_second": tokens / seconds}


def summarize(trial: dict, standalone: dict) -> dict:
    ratio = trial["tokens_per_second"] / standalone["tokens_per_second"]
    overhead = (trial["wall_seconds"] - trial["train_seconds"] - trial["probe_seconds"]) / trial["wall_seconds"]
    return {
        "throughput_ratio": ratio,
        "throughput_ratio_goal": RATIO_GOAL,
        "overhead_share": overhead,
        "overhead_goal": OVERHEAD_GOAL,
        "probe_share": trial["probe_seconds"] / trial["wall_seconds"],
    }


def markdown(result: dict) -> str:
    trial, standalone, summary = result["trial"], result["standalone"], result["summary"]
    return "\n".join(
        [
            f"# Trial throughput: {result['model']}, {result['steps']} steps, {result['cpus']} CPUs",
            "",
            "| run | tokens | training s | tokens/s |",
            "|---|---|---|---|",
            f"| sweep trial | {trial['tokens']:.0f} | {trial['train_seconds']:.1f} | {trial['tokens_per_second']:.1f} |",
            f"| standalone TRL | {standalone['tokens']:.0f} | {standalone['train_seconds']:.1f} | "
            f"{standalone['tokens_per_second']:.1f} |",
            "",
            f"- throughput ratio (trial / standalone): **{summary['throughput_ratio']:.3f}** (goal >= {RATIO_GOAL})",
            f"- per-trial overhead: **{summary['overhead_share']:.1%}** of {trial['wall_seconds']:.1f} s trial wall time "
            f"(goal <= {OVERHEAD_GOAL:.0%})",
            f"- probes: {trial['probe_seconds']:.1f} s = **{summary['probe_share']:.1%}** of trial wall time",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=Path("demo/supersense3.yaml"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/trial_throughput"))
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        config = benchmark_config(load_sweep(args.sweep), args.steps, cpus, scratch)
        trial = trial_figures(config)
    recipe = dataclasses.replace(config.recipe, training=dataclasses.replace(config.recipe.training, threads=cpus))
    standalone = standalone_figures(recipe, cpus)
    result = {
        "model": config.recipe.model,
        "steps": args.steps,
        "cpus": cpus,
        "trial": trial,
        "standalone": standalone,
        "summary": summarize(trial, standalone),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    (args.out / "result.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
