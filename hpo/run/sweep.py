"""One sweep: run directory, baseline, then Ray Tune with the TPE searcher and ASHA.

`run_sweep` runs a prepared sweep; `resume_sweep` finishes one whose driver stopped
(`hpo resume`) in a new Tuner with the same trainable, searcher, scheduler and callbacks
(`sweep_parts`), going by the sweep's own record rather than Ray's saved experiment. Both
return an `Outcome`: interrupted (by a stop signal, hpo.run.interrupt), or finished with a best
passing rung exported, or finished with none passing. What lands where in the run directory
is hpo.results.rundir's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import Callback
from ray.tune.stopper import Stopper

from hpo.config.errors import InputError
from hpo.config.sweep_file import Resources, SweepConfig, data_hashes
from hpo.results.analysis import summarize_trials
from hpo.results.best_recipe import NoPassingTrial, export_best, failure_counts
from hpo.results.rundir import (
    RunDir,
    Status,
    SweepState,
    TrialTable,
    ending_status,
    new_run_dir,
    write_json,
    write_yaml,
)
from hpo.run.baseline import measure_baseline
from hpo.run.compat import TOKEN_AUTH_LOGGER
from hpo.run.continuation import trial_dirname
from hpo.run.interrupt import STOP_SIGNALS, StopSignals
from hpo.run.reaper import watch_ray
from hpo.run.recorder import RecordCallback
from hpo.run.retention import CheckpointRetention
from hpo.run.timing import EXPORTS, MIRROR, RAY_START, TRIALS, phase
from hpo.run.tracking import wandb_mirror
from hpo.run.trial import run_trial
from hpo.run.workers import LostWorkers
from hpo.search.history import read_history
from hpo.search.scheduler import METRIC, STEP, StrictASHA, asha_rungs, make_asha
from hpo.search.searcher import RAY_TRIAL_ID, TPESearcher
from trainers.flags import Flag
from trainers.recipe import Recipe

log = logging.getLogger(__name__)
MAX_RETRIES = 1  # a trial whose worker dies is restarted once from its newest complete checkpoint
RAY_CLIENT_PREFIX = "ray://"
EXPERIMENT_ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"  # the module behind ray.tune.ExperimentAnalysis
REAPERS: list = []  # the embedded Ray reaper's process: its pipe must stay open while this process lives
# Tune's settings, read from the environment when the sweep's Tuner runs (a user's own value
# wins). The sweep prints its own live view: with verbose=0, Tune's default output still prints
# a configuration box and a TensorBoard hint, and its snapshot notice advises changing
# CheckpointConfig, which the sweep sets from `checkpoints.keep`.
TUNE_ENV = {
    "TUNE_GLOBAL_CHECKPOINT_S": "2",  # how often Ray saves its experiment state (its trials' registered checkpoints)
    "RAY_AIR_NEW_OUTPUT": "0",  # the classic output, which at verbose=0 prints nothing
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # the snapshot notice, off
    # a failed trial's raw traceback (30 lines for a lost worker), off: the live view and the record
    # say in one line how it failed (hpo.run.workers.failure_line)
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
}
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


def drop_missing_metrics_notice(record: logging.LogRecord) -> bool:
    """Ray's "Failed to fetch metrics for N trial(s)" after a run with a trial that never reported (stopped
    by Ctrl-C before its first rung, or raising at once): trials.parquet is the record, and says so."""
    return not record.getMessage().startswith("Failed to fetch metrics for")


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
        status = ending_status(last)
        violation = str(last.get(Flag.VIOLATION, ""))
        if status == Status.STOPPED:
            return status, f"guardrail: {violation}"
        if status is not None:
            return status, violation
        if trial_id in scheduler.stopped_at:
            return Status.STOPPED, f"asha: below the rung cutoff at step {scheduler.stopped_at[trial_id]}"
        return Status.STOPPED, f"sweep budget ended at step {last.get(STEP)}"

    return reason


@phase(RAY_START)
def start_ray(config: SweepConfig | None = None) -> None:
    """Join RAY_ADDRESS when set (a cluster); otherwise start Ray embedded on this machine, with a
    reaper that ends its processes when this one ends, however it ends (hpo.run.reaper)."""
    for name, value in TUNE_ENV.items():
        os.environ.setdefault(name, value)
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address and address.startswith(RAY_CLIENT_PREFIX):
        raise InputError([ray_client_refusal(address)])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not address:
        # Ray's memory monitor ends a worker with an OutOfMemoryError that Tune (2.60) does not
        # expect, and the whole sweep stops. Without it the kernel ends the largest process, the
        # trial's worker, and Tune treats that as a failed trial: retried, then recorded as error.
        os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
        for name, value in QUIET_RAY.items():
            os.environ.setdefault(name, value)
    # Ray turns token authentication on for a new local cluster (or when a token file exists)
    # and says so in a warning that broke into every sweep's live view. It stays on; the notice goes.
    logging.getLogger(TOKEN_AUTH_LOGGER).addFilter(drop_token_auth_notice)
    logging.getLogger(EXPERIMENT_ANALYSIS_LOGGER).addFilter(drop_missing_metrics_notice)
    with python_stop_handlers_kept():
        ray.init(
            address=address or None,
            include_dashboard=False,
            log_to_driver=os.environ.get("FORGE_HPO_TRIAL_LOGS") == "1",
            configure_logging=False,
        )
    if not address:
        REAPERS.append(watch_ray())


@contextlib.contextmanager
def python_stop_handlers_kept() -> Iterator[None]:
    """Ray's driver replaces the SIGTERM handler with a native one that prints a stack dump and aborts
    (exit 134); the handlers installed before it (hpo.run.interrupt.StopSignals) are put back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            if callable(handler):
                signal.signal(signum, handler)


def ray_client_refusal(address: str) -> str:
    return (
        f"RAY_ADDRESS={address}: a Ray Client address; the sweep's driver writes its record and reads its "
        "checkpoints on this machine, so run hpo on the cluster instead (`ray job submit -- hpo ...`, docs/cluster.md)"
    )


def trial_recipe(config: SweepConfig) -> Recipe:
    """The base recipe with torch threads matched to the CPUs each of a trial's processes gets."""
    threads = max(1, int(config.resources.cpu // config.resources.workers))
    return dataclasses.replace(config.recipe, training=dataclasses.replace(config.recipe.training, threads=threads))


def trial_resources(resources: Resources) -> tune.PlacementGroupFactory:
    """What Ray reserves for one trial: one bundle of all its CPUs and GPUs, so that a trial's processes
    share one node and see every GPU of the trial (each takes its own by local rank; hpo.run.ranks).
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
    reason: Any  # (trial id, last result) -> (status, stop reason)


@dataclass(frozen=True)
class Outcome:
    """How a sweep, or a resumed one, ended: interrupted by `signal`, or finished; `failures` counts
    the trials by how they failed when none passed (then no best recipe is written); `errors` are the
    trials that ended in error, (number, one-line reason), and `missing` the budget's trials that
    never reached the record."""

    run_dir: Path
    budget: int
    ended: int
    signal: int | None = None
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: tuple[tuple[int, str], ...] = ()
    missing: int = 0

    @property
    def passed(self) -> bool:
        return self.signal is None and not self.failures


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
        histories=[read_history(path) for path in config.searcher.warm_start],
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
            tune_dir=run.tune.resolve(),
            workers=config.resources.workers,
        ),
        trial_resources(config.resources),
    )
    callbacks = [
        LostWorkers(run),  # first: the record and the live view read how it judged a lost worker
        RecordCallback(table, reason),
        CheckpointRetention(run.tune, table, config.checkpoints.keep),  # after the record: reads endings
        *([live] if live else []),
        *([mirror] if mirror else []),
    ]
    return SweepParts(trainable, searcher, scheduler, table, callbacks, mirror, reason)


def make_tuner(config: SweepConfig, run_dir: Path, parts: SweepParts, trials: int, signals: StopSignals) -> tune.Tuner:
    """A Tuner for `trials` more trials of the sweep (all of them, or what a resumed sweep has left)."""
    run = RunDir(run_dir.resolve())
    tune_config = tune.TuneConfig(
        search_alg=parts.searcher,
        scheduler=parts.scheduler,
        num_samples=trials,
        max_concurrent_trials=config.budget.concurrency,
        time_budget_s=config.budget.time_budget_s,
        reuse_actors=True,
        trial_dirname_creator=trial_dirname,
    )
    run_config = tune.RunConfig(
        name=run.tune.name,
        storage_path=str(run.path),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=config.checkpoints.keep, checkpoint_score_attribute=METRIC, checkpoint_score_order="max"
        ),
        failure_config=tune.FailureConfig(max_failures=MAX_RETRIES),
        callbacks=parts.callbacks,
        stop=SignalStopper(signals),
        verbose=0,
    )
    return tune.Tuner(parts.trainable, tune_config=tune_config, run_config=run_config)


def run_sweep(
    config: SweepConfig,
    run_dir: Path,
    baseline: dict,
    live: Callback | None = None,
    signals: StopSignals | None = None,
) -> Outcome:
    """Run the trials of a prepared sweep and export the best passing rung."""
    start_ray(config)
    signals = signals or StopSignals()
    parts = sweep_parts(config, run_dir, baseline, live)
    RunDir(run_dir).write_state(SweepState.RUNNING, trials=config.budget.trials)
    tuner = make_tuner(config, run_dir, parts, config.budget.trials, signals)
    return finish(config, tuner, parts, run_dir, signals)


def resume_sweep(
    config: SweepConfig, run_dir: Path, live: Callback | None = None, signals: StopSignals | None = None
) -> Outcome:
    """Finish a sweep whose driver stopped, in a new Tuner: ended trials stay as recorded, the ones it
    left running go on (from their newest checkpoint, or from the start with the same parameters when
    they had none), and the budget's missing trials start.

    The Optuna study and trials.parquet are the record; ASHA's rung records are rebuilt from
    trials.parquet. Ray's own saved experiment is not read.
    """
    run_dir = run_dir.resolve()
    run = RunDir(run_dir)
    start_ray(config)
    signals = signals or StopSignals()
    parts = sweep_parts(config, run_dir, run.read_baseline(), live)
    recorded = sorted(parts.table.rows.values(), key=lambda row: row["recorded_at"])
    parts.scheduler.replay((row["trial_id"], int(row["step"]), row.get("objective")) for row in recorded)
    parts.searcher.continue_trials(unfinished_trials(parts))
    if live is not None:
        live.seed(parts.table)
    left = config.budget.trials - parts.searcher.ended()
    run.write_state(SweepState.RUNNING, trials=config.budget.trials)
    tuner = make_tuner(config, run_dir, parts, left, signals) if left > 0 else None
    return finish(config, tuner, parts, run_dir, signals)


def unfinished_trials(parts: SweepParts) -> list[int]:
    """The Optuna trials a stopped sweep left running that must run again; the ones whose ending
    reached the record but not the study (or the other way round) are closed here instead."""
    table, searcher = parts.table, parts.searcher
    again = []
    for trial in searcher.unfinished():
        trial_id = trial.user_attrs.get(RAY_TRIAL_ID)
        last = table.last_row(trial_id) if trial_id else None
        status = table.status.get(trial_id, (Status.RUNNING, ""))[0] if trial_id else Status.RUNNING
        if status != Status.RUNNING or (last or {}).get(Flag.FINAL):
            searcher.tell_ended(trial.number, last, error=status == Status.ERROR)
        else:
            again.append(trial.number)
    told = {t.user_attrs.get(RAY_TRIAL_ID) for t in searcher.study.get_trials(deepcopy=False) if t.state.is_finished()}
    for trial_id in table.running_trials():
        last = table.last_row(trial_id)
        if trial_id in told or (last or {}).get(Flag.FINAL):
            table.finish(trial_id, *parts.reason(trial_id, last or {}))
    return again


def finish(
    config: SweepConfig, tuner: tune.Tuner | None, parts: SweepParts, run_dir: Path, signals: StopSignals
) -> Outcome:
    """Run the Tuner; then an interrupted sweep is left for `hpo resume`, and a finished one exports
    its best passing rung (or counts how its trials failed)."""
    run = RunDir(run_dir)
    if tuner is not None:
        with signals.tune_loop(), phase(TRIALS):
            tuner.fit()
    ended = parts.searcher.ended()
    if signals.received is not None:
        run.write_state(SweepState.INTERRUPTED, trials=config.budget.trials, ended=ended, signal=signals.received)
        return Outcome(run_dir, config.budget.trials, ended, signal=signals.received)
    close_running(parts)
    run.write_state(SweepState.FINISHED, trials=config.budget.trials, ended=parts.searcher.ended())
    failures: dict[str, int] = {}
    try:
        with phase(EXPORTS):
            export_best(run_dir)
    except NoPassingTrial:
        failures = failure_counts(parts.table.by_trial())  # the record's trials, with those that never reported
    if parts.mirror:
        with phase(MIRROR):
            parts.mirror.finish_sweep(run_dir)  # the sweep-level W&B run; a bounded wait, never raises
    trials = summarize_trials(run.read_rows()) if run.trials.is_file() else []
    errors = tuple((t.number, t.stop_reason) for t in trials if t.status == Status.ERROR)
    missing = max(0, config.budget.trials - len(trials)) if config.budget.time_budget_s is None else 0
    return Outcome(
        run_dir, config.budget.trials, parts.searcher.ended(), failures=failures, errors=errors, missing=missing
    )


def close_running(parts: SweepParts) -> None:
    """Trials a time budget stopped mid-way end as stopped, in the record and the study."""
    for trial_id in parts.table.running_trials():
        parts.table.finish(trial_id, *parts.reason(trial_id, parts.table.last_row(trial_id) or {}))
    parts.searcher.close_live()


class SignalStopper(Stopper):
    """Ends the whole Tune run once a stop signal was received; never stops a single trial."""

    def __init__(self, signals: StopSignals) -> None:
        self.signals = signals

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.signals.received is not None
