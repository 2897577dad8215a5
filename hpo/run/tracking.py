"""Weights & Biases as a mirror of the sweep: one run per trial and one for the sweep, offline by default.

Parquet is the record; W&B is for side-by-side comparison. So every W&B call runs on one
background thread fed by a bounded queue, and every failure there is logged and swallowed:
a tracker that errors, stalls or is not installed never stops or slows a sweep. The Ray
Tune hooks below only put small plain dicts on the queue.

Offline runs land in RUN_DIR/wandb/ and need no account or network; `wandb sync
RUN_DIR/wandb/offline-run-*` uploads them later. With `tracking: {wandb: online}` the same
runs go straight to the W&B server of the logged-in account.

Every run's id is fixed by the run directory and the trial's recorded id (`wandb_run_id`)
and opened with `resume="allow"`: a trial that `hpo resume` continues goes on in the W&B run
it started in (offline, its second folder has the same id and `wandb sync` appends it), and
the Optuna study names the same trial id (hpo.search.searcher.RAY_TRIAL_ID).
"""

from __future__ import annotations

import logging
import math
import queue
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from hpo.config.sweep_file import Tracking
from hpo.results.analysis import RunRecord, load_run
from hpo.results.rundir import RAY_KEYS, Status
from hpo.run.continuation import recorded_id, trial_params

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000  # events; a sweep reports a few per rung, so only a stalled tracker fills it
DRAIN_TIMEOUT_S = 60.0  # how long the end of a sweep waits for W&B before leaving it behind
RUN_ID_LENGTH = 64  # W&B's limit on a run id
StopReason = Callable[[str, dict], tuple[str, str]]


def wandb_mirror(tracking: Tracking, run_dir: Path, group: str, stop_reason: StopReason) -> WandbMirror | None:
    """The sweep's W&B callback, or None when tracking is disabled."""
    if tracking.wandb == "disabled":
        return None
    return WandbMirror(Path(run_dir), tracking.wandb, tracking.project, group, stop_reason)


def wandb_run_id(run_name: str, trial_id: str) -> str:
    """The W&B run id of one trial (or "sweep") of a run directory: the same on every resume."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{run_name}-{trial_id}")[-RUN_ID_LENGTH:]


def rung_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of one reported rung worth a W&B chart (Ray's bookkeeping and NaNs left out)."""
    return {
        key: float(value)
        for key, value in result.items()
        if key not in RAY_KEYS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    }


def trial_summary(best: dict[str, float] | None, last_step: int | None, status: str, reason: str) -> dict[str, Any]:
    """A trial run's W&B summary: its best rung's metrics (objective and components), how and why it ended."""
    summary: dict[str, Any] = dict(best or {})
    if best is not None:
        summary["best_step"] = int(best["step"])
    summary.update(status=status, stop_reason=reason, last_step=last_step)
    return summary


def sweep_summary(record: RunRecord) -> dict[str, Any]:
    """The sweep run's summary: the baseline, the best rung's scores and tuned parameters, the trial count."""
    summary: dict[str, Any] = {f"baseline/{k}": v for k, v in record.baseline.items()}
    if record.best is not None:
        expected = record.best["expected"]
        tuned = {p["name"] for p in record.spec["config"]["space"]["parameters"]}
        summary.update({f"best/{k}": v for k, v in expected.items() if isinstance(v, (int, float, str))})
        params = record.best["recipe"]["hyperparameters"]
        summary.update({f"best/{k}": v for k, v in params.items() if k in tuned})
    summary["trial_count"] = len(record.trials)
    return summary


class WandbMirror(Callback):
    """Driver-side Ray Tune callback: trial events go to a queue, one thread writes them to W&B."""

    def __init__(self, run_dir: Path, mode: str, project: str, group: str, stop_reason: StopReason) -> None:
        self.run_dir = Path(run_dir)
        self.mode = mode
        self.project = project
        self.group = group
        self.stop_reason = stop_reason
        self._reset()

    def _reset(self) -> None:
        self.events: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self.worker: threading.Thread | None = None
        self.runs: dict[str, Any] = {}  # trial id -> wandb run (worker thread only)
        self.best: dict[str, dict[str, float]] = {}  # trial id -> best rung so far (worker thread only)
        self.last_step: dict[str, int] = {}
        self.dropped = 0
        self.broken = False  # set once W&B cannot be used at all; later events are skipped

    # Ray Tune pickles its callbacks with the experiment state: keep only the settings.
    def __getstate__(self) -> dict[str, Any]:
        return {k: self.__dict__[k] for k in ("run_dir", "mode", "project", "group", "stop_reason")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # --- Ray Tune hooks: enqueue only -------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial, **info):
        self.submit(self._start, recorded_id(trial), trial_params(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "step" in result:
            self.submit(self._log, recorded_id(trial), trial_params(trial.config), rung_metrics(result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        status, reason = self.stop_reason(recorded_id(trial), trial.last_result or {})
        self.submit(self._finish, recorded_id(trial), status, reason)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.submit(self._finish, recorded_id(trial), Status.ERROR, str(trial.error_file or "error"))

    def on_experiment_end(self, trials, **info):
        self.submit(self._finish_all)  # trials the sweep left running (e.g. a time budget) still get a summary
        self.drain()

    # --- the sweep-level run ----------------------------------------------------------------

    def finish_sweep(self, run_dir: Path) -> None:
        """Log the sweep-level run (baseline, best trial, final table), then wait a bounded time for W&B."""
        self.submit(self._sweep, Path(run_dir))
        self.drain()

    # --- queue and worker -------------------------------------------------------------------

    def submit(self, work: Callable[..., None], *args: Any) -> None:
        if not self.broken:
            self._put(work, args)

    def _put(self, work: Callable[..., None] | None, args: tuple) -> bool:
        if self.worker is None:
            self.worker = threading.Thread(target=self._work, name="wandb-mirror", daemon=True)
            self.worker.start()
        try:
            self.events.put_nowait((work, args))
            return True
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("W&B is not keeping up; dropping events (trials.parquet still has every rung)")
            return False

    def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        """Wait until every queued event is written; False if W&B did not finish in time."""
        if self.worker is None:
            return True
        done = threading.Event()
        if not self._put(None, (done,)) or not done.wait(timeout):
            log.warning("W&B did not finish within %.0f s; leaving it behind (trials.parquet is complete)", timeout)
            return False
        return True

    def _work(self) -> None:
        while True:
            work, args = self.events.get()
            if work is None:  # a drain marker: everything queued before it is done
                args[0].set()
                continue
            if self.broken:
                continue
            try:
                work(*args)
            except Exception as err:  # a tracker failure must never reach the sweep
                log.warning("W&B: %s failed: %s: %s", getattr(work, "__name__", "event"), type(err).__name__, err)

    # --- W&B calls (worker thread only) ----------------------------------------------------

    def _init(self, name: str, job_type: str, config: dict[str, Any]):
        """A W&B run named `name` (trial-<id> or sweep), reopened when a resumed sweep had it already."""
        try:
            import wandb
        except ImportError as err:
            self.broken = True
            raise RuntimeError("wandb is not installed; `pip install wandb` or set tracking.wandb: disabled") from err
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            run = wandb.init(
                project=self.project,
                group=self.group,
                id=wandb_run_id(self.group, name),
                resume="allow",  # a resumed sweep goes on in the same runs
                name=name,
                job_type=job_type,
                config=config,
                dir=str(self.run_dir),
                mode=self.mode,
                reinit="create_new",  # one run per trial, several open at once in this process
                settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False),
            )
        except Exception:
            self.broken = True  # e.g. online without an account: stop trying for the rest of the sweep
            raise
        run.define_metric("step")
        run.define_metric("*", step_metric="step")  # every rung is charted against training steps
        return run

    def _start(self, trial_id: str, params: dict[str, Any]) -> None:
        if trial_id not in self.runs:
            self.runs[trial_id] = self._init(f"trial-{trial_id}", "trial", {"trial_id": trial_id, **params})

    def _log(self, trial_id: str, params: dict[str, Any], metrics: dict[str, float]) -> None:
        self._start(trial_id, params)  # a trial restored from a checkpoint reports without a new start
        self.runs[trial_id].log(metrics)
        self.last_step[trial_id] = int(metrics.get("step", 0))
        best = self.best.get(trial_id)
        if "objective" in metrics and (best is None or metrics["objective"] > best["objective"]):
            self.best[trial_id] = metrics

    def _finish(self, trial_id: str, status: str, reason: str) -> None:
        run = self.runs.pop(trial_id, None)
        if run is None:
            return
        run.summary.update(trial_summary(self.best.get(trial_id), self.last_step.get(trial_id), status, reason))
        run.finish()

    def _finish_all(self) -> None:
        for trial_id in list(self.runs):
            self._finish(trial_id, Status.STOPPED, "the sweep ended")

    def _sweep(self, run_dir: Path) -> None:
        import wandb

        record = load_run(run_dir)
        run = self._init("sweep", "sweep", {"spec_hash": record.spec["spec_hash"], **record.spec["config"]})
        columns, rows = record.final_table()
        run.log({"trials": wandb.Table(columns=columns, data=rows)})
        run.summary.update(sweep_summary(record))
        run.finish()
