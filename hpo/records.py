"""trials.parquet, the sweep's record: one row per trial per rung, written atomically.

`TrialTable` is plain Python (a test drives it without Ray); `RecordCallback` feeds it
from Ray Tune's driver-side events. Whatever happens to trackers or trials, every rung
that reached the driver is on disk.
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


class TrialTable:
    """Rows keyed by (trial, step); a trial's status and stop reason are set on all its rows."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.status: dict[str, tuple[str, str]] = {}
        self.started: dict[str, float] = {}  # when the driver started each trial (for overhead)

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
        return pa.Table.from_pylist(rows)

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

    def on_trial_start(self, iteration, trials, trial, **info):
        self.table.start(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "step" in result:
            self.table.add_result(trial.trial_id, trial.config, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.table.finish(trial.trial_id, *self.stop_reason(trial.trial_id, trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info):
        message = str(trial.error_file or "")
        error = Path(message).read_text().strip().splitlines()[-1] if message and Path(message).exists() else "error"
        self.table.finish(trial.trial_id, "error", error[:500])
