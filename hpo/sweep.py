"""One sweep: run directory, baseline, then Ray Tune with the TPE searcher and ASHA.

`run_sweep` runs a prepared sweep; `resume_sweep` finishes one whose driver stopped
(`hpo resume`), with the same trainable, searcher, scheduler and callbacks (`sweep_parts`).
What lands where in the run directory is hpo.rundir's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import Callback

from hpo.baseline import measure_baseline
from hpo.best_recipe import export_best
from hpo.compat import TOKEN_AUTH_LOGGER, replace_tuner_settings
from hpo.config import Resources, SweepConfig, data_hashes
from hpo.recorder import RecordCallback
from hpo.retention import CheckpointRetention
from hpo.rundir import RunDir, Status, TrialTable, new_run_dir, write_json, write_yaml
from hpo.scheduler import METRIC, STEP, StrictASHA, asha_rungs, make_asha
from hpo.searcher import TPESearcher
from hpo.tracking import wandb_mirror
from hpo.trial import run_trial
from trainers.flags import Flag
from trainers.recipe import Recipe

log = logging.getLogger(__name__)
MAX_RETRIES = 1  # a trial whose worker dies is restarted once from its newest complete checkpoint
STATE_PERIOD_S = "2"  # at most this old is the experiment state `hpo resume` restarts from
# Embedded Ray's background work, off: every CPU-second it takes while a trial trains stalls
# both of torch's lockstep threads. Metrics export (nobody scrapes it without a dashboard), event
# statistics, and idle workers started ahead for tasks (trials run in actors) about halve what an
# idle Ray uses. Workers also run at the driver's priority instead of Ray's default nice 15, which
# slowed a trial's training while Ray's own processes ran beside it (benchmarks/README.md).
QUIET_RAY = {
    "RAY_worker_niceness": "0",
    "RAY_enable_metrics_collection": "0",
    "RAY_event_stats": "0",
    "RAY_prestart_worker_first_driver": "0",
    "RAY_enable_worker_prestart": "0",
}


def drop_token_auth_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def write_spec(config: SweepConfig, run: RunDir) -> None:
    spec = {
        "sweep_file": config.path,  # what `hpo resume` reloads and checks against `config`
        "spec_hash": config.spec_hash(),
        "data_sha256": data_hashes(config.recipe.data, config.recipe.general),
        "config": config.resolved(),
    }
    write_yaml(run.spec, spec)


def stop_reason(scheduler: StrictASHA):
    def reason(trial_id: str, last: dict) -> tuple[str, str]:
        violation = str(last.get(Flag.VIOLATION, ""))
        if last.get(Flag.DIVERGED):
            return Status.DIVERGED, violation
        if last.get(Flag.FAILED) or last.get(Flag.OOM):  # the reward endpoint kept failing; OOM at batch size 1
            return Status.ERROR, violation
        if last.get(Flag.GUARDRAIL):  # e.g. RFT's KL over its limit, or a reward blow-up
            return Status.STOPPED, f"guardrail: {violation}"
        if last.get(Flag.FINAL):
            return Status.COMPLETED, ""
        if trial_id in scheduler.stopped_at:
            return Status.STOPPED, f"asha: below the rung cutoff at step {scheduler.stopped_at[trial_id]}"
        return Status.STOPPED, f"sweep budget ended at step {last.get(STEP)}"

    return reason


def start_ray(config: SweepConfig) -> None:
    """Join RAY_ADDRESS when set (a cluster); otherwise start Ray embedded on this machine."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", STATE_PERIOD_S)  # read when the sweep's Tuner runs
    if ray.is_initialized():
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not os.environ.get("RAY_ADDRESS"):
        # Ray's memory monitor ends a worker with an OutOfMemoryError that Tune (2.60) does not
        # expect, and the whole sweep stops. Without it the kernel ends the largest process, the
        # trial's worker, and Tune treats that as a failed trial: retried, then recorded as error.
        os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
        for name, value in QUIET_RAY.items():
            os.environ.setdefault(name, value)
    # Ray turns token authentication on for a new local cluster (or when a token file exists)
    # and says so in a warning that broke into every sweep's live view. It stays on; the notice goes.
    logging.getLogger(TOKEN_AUTH_LOGGER).addFilter(drop_token_auth_notice)
    ray.init(
        address=os.environ.get("RAY_ADDRESS") or None,
        include_dashboard=False,
        log_to_driver=os.environ.get("FORGE_HPO_TRIAL_LOGS") == "1",
        configure_logging=False,
    )


def trial_recipe(config: SweepConfig) -> Recipe:
    """The base recipe with torch threads matched to the CPUs each of a trial's processes gets."""
    threads = max(1, int(config.resources.cpu // config.resources.workers))
    return dataclasses.replace(config.recipe, training=dataclasses.replace(config.recipe.training, threads=threads))


def trial_resources(resources: Resources) -> tune.PlacementGroupFactory:
    """What Ray reserves for one trial: one bundle of all its CPUs and GPUs, so that a trial's processes
    share one node and see every GPU of the trial (each takes its own by local rank; hpo.ranks).
    A fraction of a GPU packs several trials onto one."""
    bundle = {"CPU": resources.cpu, **({"GPU": resources.gpu} if resources.gpu else {})}
    return tune.PlacementGroupFactory([bundle])


def prepare(config: SweepConfig, baseline: dict | None = None, run_dir: Path | None = None) -> tuple[Path, dict]:
    """Baseline first (a model that cannot load fails here, before any run dir), then the run dir.

    A baseline measured already (to gate the sweep on it) is reused; `run_dir` puts the
    run in a given folder (a pipeline's stage) instead of a new stamped one.
    """
    baseline = baseline or measure_baseline(trial_recipe(config))
    if run_dir is None:
        run = new_run_dir(config.output_dir, config.name)
    else:
        run = RunDir(run_dir)
        run.path.mkdir(parents=True, exist_ok=False)
    write_spec(config, run)
    write_json(run.baseline, baseline)
    return run.path, baseline


@dataclass
class SweepParts:
    """What a sweep runs with, built in one place for a new sweep and a resumed one."""

    trainable: Any
    searcher: TPESearcher
    scheduler: StrictASHA
    table: TrialTable
    callbacks: list[Callback]
    mirror: Any  # the W&B mirror, None when W&B is disabled


def sweep_parts(config: SweepConfig, run_dir: Path, baseline: dict, live: Callback | None) -> SweepParts:
    scheduler = make_asha(
        config.scheduler.max_steps,
        config.scheduler.rung_interval,
        config.scheduler.reduction_factor,
        config.budget.trials,
    )
    rungs = asha_rungs(config.scheduler.rung_interval, config.scheduler.max_steps, config.scheduler.reduction_factor)
    run = RunDir(run_dir)
    searcher = TPESearcher(
        config.space,
        run.journal,
        config.name,
        config.searcher.seed,
        config.searcher.startup_trials,
        rungs=rungs,
    )
    table = TrialTable(run.trials)  # a resumed sweep's rows stay as they are
    reason = stop_reason(scheduler)
    mirror = wandb_mirror(config.tracking, run_dir, run_dir.name, reason)  # None: W&B disabled
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            recipe=trial_recipe(config),
            baseline=baseline["metrics"],
            objective=config.objective,
            workers=config.resources.workers,
        ),
        trial_resources(config.resources),
    )
    callbacks = [
        RecordCallback(table, reason),
        CheckpointRetention(run.tune, table, config.checkpoints.keep),  # after the record: reads endings
        *([live] if live else []),
        *([mirror] if mirror else []),
    ]
    return SweepParts(trainable, searcher, scheduler, table, callbacks, mirror)


def tune_config(config: SweepConfig, parts: SweepParts) -> tune.TuneConfig:
    return tune.TuneConfig(
        search_alg=parts.searcher,
        scheduler=parts.scheduler,
        num_samples=config.budget.trials,
        max_concurrent_trials=config.budget.concurrency,
        time_budget_s=config.budget.time_budget_s,
        reuse_actors=True,
    )


def run_config(config: SweepConfig, run_dir: Path, parts: SweepParts) -> tune.RunConfig:
    run = RunDir(run_dir.resolve())
    return tune.RunConfig(
        name=run.tune.name,
        storage_path=str(run.path),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=config.checkpoints.keep, checkpoint_score_attribute=METRIC, checkpoint_score_order="max"
        ),
        failure_config=tune.FailureConfig(max_failures=MAX_RETRIES),
        callbacks=parts.callbacks,
        verbose=0,
    )


def run_sweep(config: SweepConfig, run_dir: Path, baseline: dict, live: Callback | None = None) -> Path:
    """Run the trials of a prepared sweep and export the best rung; returns the run directory."""
    start_ray(config)
    parts = sweep_parts(config, run_dir, baseline, live)
    tuner = tune.Tuner(
        parts.trainable, tune_config=tune_config(config, parts), run_config=run_config(config, run_dir, parts)
    )
    return finish(tuner, parts, run_dir)


def resume_sweep(config: SweepConfig, run_dir: Path, live: Callback | None = None) -> Path:
    """Finish a sweep whose driver stopped: ended trials stay as recorded, unfinished and errored
    ones go on from their newest complete checkpoints, the budget's missing trials start.

    Ray restores its trials and the searcher's state (re-attached to the study journal);
    ASHA's rung records are rebuilt from trials.parquet.
    """
    run_dir = run_dir.resolve()  # Ray restores from an absolute path or URI
    baseline = RunDir(run_dir).read_baseline()
    start_ray(config)
    parts = sweep_parts(config, run_dir, baseline, live)
    recorded = sorted(parts.table.rows.values(), key=lambda row: row["recorded_at"])
    parts.scheduler.replay(
        ((row["trial_id"], int(row["step"]), row.get("objective")) for row in recorded), parts.table.ended_trials()
    )
    tuner = tune.Tuner.restore(str(RunDir(run_dir).tune), parts.trainable, resume_unfinished=True, resume_errored=True)
    attach(tuner, tune_config(config, parts), run_config(config, run_dir, parts))
    return finish(tuner, parts, run_dir)


def attach(tuner: tune.Tuner, tune_settings: tune.TuneConfig, run_settings: tune.RunConfig) -> None:
    """Give a restored Tuner this sweep's searcher, scheduler and callbacks.

    `Tuner.restore` brings back the ones pickled when the sweep started, with none of
    what they learnt since (and an empty record). Ray has no public way to replace them
    (`hpo.compat.replace_tuner_settings`); on `fit` Ray restores the searcher's saved
    state into the new searcher. Storage path and name are the same as before.
    """
    replace_tuner_settings(tuner, tune_settings, run_settings)


def finish(tuner: tune.Tuner, parts: SweepParts, run_dir: Path) -> Path:
    tuner.fit()
    export_best(run_dir)
    if parts.mirror:
        parts.mirror.finish_sweep(run_dir)  # the sweep-level W&B run; a bounded wait, never raises
    return run_dir
