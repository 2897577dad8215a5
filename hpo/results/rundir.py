"""The run directory: one module knows its files, their layout and their formats.

    RUN/spec.yaml            the sweep file's path, the resolved config, its hash, the data hashes
    RUN/state.json           whether the sweep is running, was interrupted or finished (SweepState)
    RUN/baseline.json        the base model on the probes
    RUN/trials.parquet       one row per trial per rung (TrialTable writes it, read_rows reads it)
    RUN/study.journal        the Optuna study (journal file: safe for several processes)
    RUN/tune/                Ray Tune's experiments: trial folders and their rung checkpoints
    RUN/best/                recipe.yaml, adapter/, test_scores.json and the export files
    RUN/report/              `hpo report`'s page, summary and plots
    RUN/wandb/               W&B offline runs

A pipeline's run directory holds pipeline.yaml (the file as given), chain.yaml and one
complete run directory per stage under stages/<stage>/.

Everything here is plain file handling (yaml, json, pyarrow): reading a run for a report or
an export imports no Ray. Writes are atomic (a temporary file, then a rename), so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from hpo.config.errors import InputError
from trainers.checkpoints import checkpoint_step, newest_complete
from trainers.flags import Flag

PARAM_PREFIX = "param_"  # trials.parquet columns of a trial's hyperparameters
# Result keys Ray adds that are bookkeeping, not metrics worth a column.
RAY_KEYS = frozenset(
    {
        "config",
        "date",
        "hostname",
        "node_ip",
        "pid",
        "time_this_iter_s",
        "time_since_restore",
        "iterations_since_restore",
        "timestamp",
        "done",
        "trial_id",
        "experiment_tag",
        "checkpoint_dir_name",
        "should_checkpoint",
        "timesteps_total",
        "episodes_total",
        "timesteps_since_restore",
    }
)


class Status:
    """How a trial ended, as trials.parquet records it (`status`), with a `stop_reason` beside it."""

    RUNNING = "running"
    COMPLETED = "completed"  # trained to the end of its schedule
    STOPPED = "stopped"  # by ASHA, a guardrail or the end of the budget
    DIVERGED = "diverged"
    ERROR = "error"  # raised, lost its worker too often, or ran out of memory at batch size 1


def ending_status(last: dict[str, Any]) -> str | None:
    """How a trial ended, read from the flags of its last result; None when they do not say
    (stopped by the scheduler or the budget: only the engine knows which)."""
    if last.get(Flag.DIVERGED):
        return Status.DIVERGED
    if last.get(Flag.FAILED) or last.get(Flag.OOM):  # the reward kept failing; out of memory at batch size 1
        return Status.ERROR
    if last.get(Flag.GUARDRAIL):  # e.g. RFT's KL over its limit, or a reward blow-up
        return Status.STOPPED
    if last.get(Flag.FINAL):
        return Status.COMPLETED
    return None


def passes(row: dict[str, Any]) -> bool:
    """Whether a rung is a recipe worth exporting: scored, within every limit, not a failing ending."""
    return row.get("objective") is not None and not row.get(Flag.VIOLATION)


class SweepState:
    """What RUN/state.json says about the sweep as a whole."""

    RUNNING = "running"  # started (or resumed) and not ended: a killed driver leaves this
    INTERRUPTED = "interrupted"  # stopped by SIGINT or SIGTERM; `hpo resume` finishes it
    FINISHED = "finished"  # the budget ran out


class RunDir:
    """The paths of one run directory."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    spec = property(lambda self: self.path / "spec.yaml")
    state = property(lambda self: self.path / "state.json")
    baseline = property(lambda self: self.path / "baseline.json")
    trials = property(lambda self: self.path / "trials.parquet")
    journal = property(lambda self: self.path / "study.journal")
    tune = property(lambda self: self.path / "tune")
    best = property(lambda self: self.path / "best")
    recipe = property(lambda self: self.path / "best" / "recipe.yaml")
    adapter = property(lambda self: self.path / "best" / "adapter")
    test_scores = property(lambda self: self.path / "best" / "test_scores.json")
    report = property(lambda self: self.path / "report")
    wandb = property(lambda self: self.path / "wandb")
    pipeline = property(lambda self: self.path / "pipeline.yaml")
    chain = property(lambda self: self.path / "chain.yaml")
    workers = property(lambda self: self.path / "workers")  # one file per trial, written by its worker (hpo.run.workers)

    def worker_file(self, trial_id: str) -> Path:
        return self.workers / f"{trial_id}.json"

    def stage(self, name: str) -> RunDir:
        """A pipeline stage's own run directory."""
        return RunDir(self.path / "stages" / name)

    def require(self, *files: str) -> None:
        """InputError naming the files of this run directory that are missing."""
        if not self.path.is_dir():
            raise InputError([f"{self.path}: folder not found (give a run directory written by `hpo sweep`)"])
        missing = [name for name in files if not (self.path / name).is_file()]
        if missing:
            raise InputError(
                [f"{self.path}: {', '.join(missing)} not found (give a run directory written by `hpo sweep`)"]
            )

    def read_spec(self) -> dict[str, Any]:
        return yaml.safe_load(self.spec.read_text())

    def read_baseline(self) -> dict[str, Any]:
        """baseline.json: {"metrics", "predictions", "model", ...}."""
        return json.loads(self.baseline.read_text())

    def read_rows(self) -> list[dict[str, Any]]:
        return read_rows(self.trials)

    def read_recipe_document(self) -> dict[str, Any] | None:
        """best/recipe.yaml as plain data (None before a best rung was exported)."""
        return yaml.safe_load(self.recipe.read_text()) if self.recipe.is_file() else None

    def read_test_scores(self) -> dict[str, Any] | None:
        return json.loads(self.test_scores.read_text()) if self.test_scores.is_file() else None

    def write_state(self, state: str, **details: Any) -> None:
        write_json(self.state, {"state": state, "at": time.time(), **details})

    def read_state(self) -> str:
        """The sweep's state; a run directory from before state.json existed counts as finished."""
        return json.loads(self.state.read_text())["state"] if self.state.is_file() else SweepState.FINISHED


def partial_line(run: RunDir) -> str:
    """What the export, the printed outcome and the report say about the best rung of an unfinished sweep."""
    return (
        f"partial: {run.path} has not finished; this is the best rung so far, not the sweep's answer "
        f"(finish it with `hpo resume {run.path}`)"
    )


def new_run_dir(output_dir: Path | str, name: str) -> RunDir:
    """A fresh run directory `OUTPUT/NAME-YYYYmmdd-HHMMSS`, created here; `-2`, `-3`, ... when another
    sweep of the same name took that second already."""
    stem = Path(output_dir) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    for number in range(1, 1000):
        run = RunDir(stem if number == 1 else stem.with_name(f"{stem.name}-{number}"))
        try:
            run.path.mkdir()
            return run
        except FileExistsError:
            continue
    raise FileExistsError(f"{stem}: a thousand run directories of this name in one second")


def write_text(path: Path, text: str) -> Path:
    """Write `text` atomically: a reader sees the old file or the new one, never half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_json(path: Path, document: Any, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(document, indent=indent) + "\n")


def write_yaml(path: Path, document: Any) -> Path:
    return write_text(path, yaml.safe_dump(document, sort_keys=False))


# --- trials.parquet: the column codec, the reader and the writer ------------------------------


def param_columns(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's hyperparameters as trials.parquet columns."""
    return {f"{PARAM_PREFIX}{name}": value for name, value in params.items()}


def row_params(row: dict[str, Any], drop_null: bool = False) -> dict[str, Any]:
    """The hyperparameters a trials.parquet row records; `drop_null` leaves out the null columns
    (parameters other trials had and this one did not)."""
    params = {k[len(PARAM_PREFIX) :]: v for k, v in row.items() if k.startswith(PARAM_PREFIX)}
    return {k: v for k, v in params.items() if v is not None} if drop_null else params


def is_param_column(name: str) -> bool:
    return name.startswith(PARAM_PREFIX)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a trials.parquet, read from one snapshot of its bytes.

    A sweep replaces the file as it goes; pyarrow opens a path more than once (footer,
    then pages), so a read across a replacement can mix two versions of the file. Read on
    the calling thread: Arrow's thread pools, once started, can abort the process at exit
    (apache/arrow#34314), and a run's record is small.
    """
    table = pq.read_table(pa.BufferReader(Path(path).read_bytes()), use_threads=False, pre_buffer=False)
    return table.to_pylist()


def clean(value: Any) -> Any:
    """Parquet-friendly scalars; non-finite floats become null rather than NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class TrialTable:
    """trials.parquet as the sweep writes it: rows keyed by (trial, step); a trial's status and stop
    reason are set on all its rows. A table opened on an existing file (a resumed sweep) keeps its
    rows as they are and adds to them."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.status: dict[str, tuple[str, str]] = {}
        self.started: dict[str, float] = {}  # when the driver started each trial (for overhead)
        if self.path.is_file():
            self.load()

    def load(self) -> None:
        for row in read_rows(self.path):
            status, reason = row.pop("status"), row.pop("stop_reason")
            trial_id = row["trial_id"]
            self.rows[(trial_id, int(row["step"]))] = {k: v for k, v in row.items() if v is not None}
            self.status[trial_id] = (status, reason or "")
            if row.get("trial_started_at") is not None:
                self.started[trial_id] = row["trial_started_at"]

    def last_row(self, trial_id: str) -> dict[str, Any] | None:
        steps = [step for trial, step in self.rows if trial == trial_id]
        return self.rows[(trial_id, max(steps))] if steps else None

    def ended(self, trial_id: str) -> bool:
        """Whether the trial's ending is recorded (an error too: it had its retry, and is never resumed)."""
        return self.status.get(trial_id, (Status.RUNNING, ""))[0] != Status.RUNNING

    def ended_trials(self) -> set[str]:
        """Trials that must not run again: their ending is recorded, or their last rung was final."""
        trials = {trial for trial, _ in self.rows}
        return {t for t in trials if self.ended(t) or (self.last_row(t) or {}).get(Flag.FINAL)}

    def by_trial(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """Every trial the driver saw, rungs or not, as (status, its rows by step)."""
        rows: dict[str, list[dict[str, Any]]] = {trial_id: [] for trial_id in self.status}
        for (trial_id, _), row in sorted(self.rows.items()):
            rows.setdefault(trial_id, []).append(row)
        return [(self.status.get(t, (Status.RUNNING, ""))[0], trial_rows) for t, trial_rows in rows.items()]

    def running_trials(self) -> list[str]:
        """Trials whose ending is not recorded yet."""
        return [t for t, (status, _) in self.status.items() if status == Status.RUNNING]

    def start(self, trial_id: str) -> None:
        self.started.setdefault(trial_id, time.time())

    def add_result(self, trial_id: str, params: dict[str, Any], result: dict[str, Any]) -> None:
        metrics = {k: clean(v) for k, v in result.items() if k not in RAY_KEYS and not isinstance(v, dict)}
        row = {"trial_id": trial_id, **param_columns(params), **metrics}
        row["recorded_at"] = time.time()
        row["trial_started_at"] = self.started.get(trial_id)
        self.rows[(trial_id, int(result["step"]))] = row
        self.status.setdefault(trial_id, (Status.RUNNING, ""))
        self.write()

    def finish(self, trial_id: str, status: str, reason: str = "", params: dict[str, Any] | None = None) -> None:
        """Set a trial's ending; one that ends without a rung (it failed first) gets a row of its own at
        step 0 with its parameters (`params`), so that the record holds every trial the sweep ran."""
        self.status[trial_id] = (status, reason)
        if params is not None and self.last_row(trial_id) is None:
            row = {"trial_id": trial_id, **param_columns(params), "step": 0, "recorded_at": time.time()}
            self.rows[(trial_id, 0)] = {**row, "trial_started_at": self.started.get(trial_id)}
        self.write()

    def table(self) -> pa.Table:
        rows = []
        for (trial_id, _), row in sorted(self.rows.items()):
            status, reason = self.status.get(trial_id, (Status.RUNNING, ""))
            rows.append({**row, "status": status, "stop_reason": reason})
        columns = dict.fromkeys(key for row in rows for key in row)  # every row's keys: Arrow reads only the first's
        return pa.Table.from_pylist([{**columns, **row} for row in rows])

    def write(self) -> None:
        tmp = self.path.with_suffix(".parquet.tmp")
        pq.write_table(self.table(), tmp)
        tmp.replace(self.path)


# --- rung checkpoints under tune/ --------------------------------------------------------------


def trial_checkpoints(tune_dir: Path, trial_id: str) -> list[Path]:
    """The checkpoint folders of a trial, from every Ray trial that ran it
    (tune/<trainable>_<trial id>_<Ray trial id>/checkpoint_NNNNNN, hpo.run.continuation)."""
    return sorted(Path(tune_dir).glob(f"*_{trial_id}_*/checkpoint_*"))


def continue_point(run_dir: RunDir, trial_id: str) -> Path | None:
    """Where a continued trial goes on from: its newest complete checkpoint at a rung the record has
    (a checkpoint saved just before the sweep stopped, whose rung never reached the driver, is
    passed over: ASHA and the searcher must see every rung). None: from the start."""
    rows = read_rows(run_dir.trials) if run_dir.trials.is_file() else []
    steps = [int(row["step"]) for row in rows if row["trial_id"] == trial_id]
    if not steps:
        return None
    return newest_complete(trial_checkpoints(run_dir.tune, trial_id), at_most=max(steps))


def find_checkpoint(run_dir: RunDir, trial_id: str, step: int) -> Path | None:
    """The kept, complete checkpoint folder of `trial_id` at `step` (Ray's layout under tune/)."""
    for folder in trial_checkpoints(run_dir.tune, trial_id):
        if checkpoint_step(folder) == step:
            return folder
    return None
