"""trials.parquet, the sweep's record: one row per trial per rung, written atomically.

`TrialTable` is plain Python (a test drives it without Ray); `RecordCallback` feeds it
from Ray Tune's driver-side events. Whatever happens to trackers or trials, every rung
that reached the driver is on disk. A table opened on an existing file (a resumed
sweep) keeps its rows as they are and adds to them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ray.tune import Callback

# Result keys Ray adds that are bookkeeping, not metrics worth a column.
RAY_KEYS = {
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
RUNNING = "running"
ERROR = "error"
LOST = "lost: the sweep stopped before Ray recorded this trial, so it was not resumed"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a trials.parquet, read from one snapshot of its bytes.

    A sweep replaces the file as it goes; pyarrow opens a path more than once (footer,
    then pages), so a read across a replacement can mix two versions of the file.
    """
    return pq.read_table(pa.BufferReader(Path(path).read_bytes())).to_pylist()


class TrialTable:
    """Rows keyed by (trial, step); a trial's status and stop reason are set on all its rows."""

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
        """Whether the trial's ending is recorded (an error may still be resumed, so it does not count)."""
        return self.status.get(trial_id, (RUNNING, ""))[0] not in (RUNNING, ERROR)

    def ended_trials(self) -> set[str]:
        """Trials that must not run again: their ending is recorded, or their last rung was final."""
        trials = {trial for trial, _ in self.rows}
        return {t for t in trials if self.ended(t) or (self.last_row(t) or {}).get("final")}

    def lose(self, known: set[str]) -> None:
        """Mark running trials that Ray does not know (after a restore) as lost."""
        lost = [t for t, (status, _) in self.status.items() if status == RUNNING and t not in known]
        for trial_id in lost:
            self.status[trial_id] = (ERROR, LOST)
        if lost:
            self.write()

    def start(self, trial_id: str) -> None:
        self.started.setdefault(trial_id, time.time())

    def add_result(self, trial_id: str, params: dict[str, Any], result: dict[str, Any]) -> None:
        metrics = {k: clean(v) for k, v in result.items() if k not in RAY_KEYS and not isinstance(v, dict)}
        row = {"trial_id": trial_id, **{f"param_{k}": v for k, v in params.items()}, **metrics}
        row["recorded_at"] = time.time()
        row["trial_started_at"] = self.started.get(trial_id)
        self.rows[(trial_id, int(result["step"]))] = row
        self.status.setdefault(trial_id, (RUNNING, ""))
        self.write()

    def finish(self, trial_id: str, status: str, reason: str = "") -> None:
        self.status[trial_id] = (status, reason)
        self.write()

    def table(self) -> pa.Table:
        rows = []
        for (trial_id, _), row in sorted(self.rows.items()):
            status, reason = self.status.get(trial_id, (RUNNING, ""))
            rows.append({**row, "status": status, "stop_reason": reason})
        columns = dict.fromkeys(key for row in rows for key in row)  # every row's keys: Arrow reads only the first's
        return pa.Table.from_pylist([{**columns, **row} for row in rows])

    def write(self) -> None:
        tmp = self.path.with_suffix(".parquet.tmp")
        pq.write_table(self.table(), tmp)
        tmp.replace(self.path)


def clean(value: Any) -> Any:
    """Parquet-friendly scalars; non-finite floats become null rather than NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RecordCallback(Callback):
    """Driver-side: every reported rung and every trial ending goes to the table."""

    def __init__(self, table: TrialTable, stop_reason) -> None:
        self.table = table
        self.stop_reason = stop_reason  # (trial_id, last_result) -> (status, reason)
        self.checked_trials = False

    def on_step_begin(self, iteration, trials, **info):
        if not self.checked_trials:  # a resumed sweep: trials on record that Ray never heard of are lost
            self.table.lose({trial.trial_id for trial in trials})
            self.checked_trials = True

    def on_trial_start(self, iteration, trials, trial, **info):
        self.table.start(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "step" in result:
            self.table.add_result(trial.trial_id, trial.config, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.table.ended(trial.trial_id):  # ended before a resume: its record stands
            return
        last = self.table.last_row(trial.trial_id) or trial.last_result
        self.table.finish(trial.trial_id, *self.stop_reason(trial.trial_id, last))

    def on_trial_error(self, iteration, trials, trial, **info):
        message = str(trial.error_file or "")
        error = Path(message).read_text().strip().splitlines()[-1] if message and Path(message).exists() else "error"
        self.table.finish(trial.trial_id, ERROR, error[:500])
