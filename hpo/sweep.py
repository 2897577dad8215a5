"""One sweep: run directory, baseline, then Ray Tune with the TPE searcher and ASHA.

run_dir/spec.yaml        resolved config + spec hash + data hashes
run_dir/baseline.json    the base model on the probes
run_dir/study.journal    the Optuna study (journal file: safe for several processes)
run_dir/tune/            Ray Tune's experiment (trial dirs, checkpoints)
run_dir/trials.parquet   one row per trial per rung
run_dir/best/            recipe.yaml and adapter of the best rung
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import ray
import yaml
from ray import tune
from ray.tune import Callback

from hpo.baseline import measure_baseline, write_json
from hpo.config import SweepConfig, data_hashes
from hpo.export import export_best
from hpo.records import RecordCallback, TrialTable
from hpo.scheduler import METRIC, STEP, StrictASHA, asha_rungs, make_asha
from hpo.searcher import TPESearcher
from hpo.tracking import wandb_mirror
from hpo.trial import run_trial
from trainers.recipe import Recipe

log = logging.getLogger(__name__)
CHECKPOINTS_KEPT = 2  # per trial, ranked by objective: the best rung is always kept
MAX_RETRIES = 1  # a trial whose worker dies is restarted once from its last checkpoint


def make_run_dir(config: SweepConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.output_dir) / f"{config.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def write_spec(config: SweepConfig, run_dir: Path) -> None:
    spec = {
        "spec_hash": config.spec_hash(),
        "data_sha256": data_hashes(config.recipe.data),
        "config": config.resolved(),
    }
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def stop_reason(scheduler: StrictASHA):
    def reason(trial_id: str, last: dict) -> tuple[str, str]:
        if last.get("diverged"):
            return "diverged", str(last.get("violation", ""))
        if last.get("failed"):  # e.g. the reward endpoint kept failing
            return "error", str(last.get("violation", ""))
        if last.get("guardrail"):  # e.g. RFT's KL over its limit, or a reward blow-up
            return "stopped", f"guardrail: {last.get('violation', '')}"
        if last.get("final"):
            return "completed", ""
        if trial_id in scheduler.stopped_at:
            return "stopped", f"asha: below the rung cutoff at step {scheduler.stopped_at[trial_id]}"
        return "stopped", f"sweep budget ended at step {last.get(STEP)}"

    return reason


def start_ray(config: SweepConfig) -> None:
    """Join RAY_ADDRESS when set (a cluster); otherwise start Ray embedded on this machine."""
    if ray.is_initialized():
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ray.init(
        address=os.environ.get("RAY_ADDRESS") or None,
        include_dashboard=False,
        log_to_driver=os.environ.get("FORGE_HPO_TRIAL_LOGS") == "1",
        configure_logging=False,
    )


def trial_recipe(config: SweepConfig) -> Recipe:
    """The base recipe with torch threads matched to the CPUs each trial gets."""
    threads = max(1, int(config.resources.cpu))
    return dataclasses.replace(config.recipe, training=dataclasses.replace(config.recipe.training, threads=threads))


def prepare(config: SweepConfig, baseline: dict | None = None, run_dir: Path | None = None) -> tuple[Path, dict]:
    """Baseline first (a model that cannot load fails here, before any run dir), then the run dir.

    A baseline measured already (to gate the sweep on it) is reused; `run_dir` puts the
    run in a given folder (a pipeline's stage) instead of a new stamped one.
    """
    baseline = baseline or measure_baseline(trial_recipe(config))
    if run_dir is None:
        run_dir = make_run_dir(config)
    else:
        run_dir.mkdir(parents=True, exist_ok=False)
    write_spec(config, run_dir)
    write_json(run_dir / "baseline.json", baseline)
    return run_dir, baseline


def run_sweep(config: SweepConfig, run_dir: Path, baseline: dict, live: Callback | None = None) -> Path:
    """Run the trials of a prepared sweep and export the best rung; returns the run directory."""
    recipe = trial_recipe(config)
    start_ray(config)
    scheduler = make_asha(config.scheduler.max_steps, config.scheduler.rung_interval, config.scheduler.reduction_factor)
    rungs = asha_rungs(config.scheduler.rung_interval, config.scheduler.max_steps, config.scheduler.reduction_factor)
    searcher = TPESearcher(
        config.space,
        run_dir / "study.journal",
        config.name,
        config.searcher.seed,
        config.searcher.startup_trials,
        rungs=rungs,
    )
    table = TrialTable(run_dir / "trials.parquet")
    mirror = wandb_mirror(config.tracking, run_dir, run_dir.name, stop_reason(scheduler))  # None: W&B disabled
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, recipe=recipe, baseline=baseline["metrics"], objective=config.objective),
        {"cpu": config.resources.cpu, "gpu": config.resources.gpu},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=config.budget.trials,
            max_concurrent_trials=config.budget.concurrency,
            time_budget_s=config.budget.time_budget_s,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(run_dir.resolve()),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=CHECKPOINTS_KEPT, checkpoint_score_attribute=METRIC, checkpoint_score_order="max"
            ),
            failure_config=tune.FailureConfig(max_failures=MAX_RETRIES),
            callbacks=[
                RecordCallback(table, stop_reason(scheduler)),
                *([live] if live else []),
                *([mirror] if mirror else []),
            ],
            verbose=0,
        ),
    )
    tuner.fit()
    export_best(run_dir)
    if mirror:
        mirror.finish_sweep(run_dir)  # the sweep-level W&B run; a bounded wait, never raises
    return run_dir
