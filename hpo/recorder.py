"""Feeds trials.parquet, the sweep's record, from Ray Tune's driver-side events.

Whatever happens to trackers or trials, every rung that reached the driver is on disk:
the table (hpo.rundir.TrialTable) is rewritten atomically with every result and ending.
Rows are keyed by the trial's recorded id (hpo.continuation), so a trial that `hpo resume`
continued keeps its rows together.
"""

from __future__ import annotations

from pathlib import Path

from ray.tune import Callback

from hpo.continuation import recorded_id, trial_params
from hpo.rundir import Status, TrialTable


class RecordCallback(Callback):
    """Driver-side: every reported rung and every trial ending goes to the table."""

    def __init__(self, table: TrialTable, stop_reason) -> None:
        self.table = table
        self.stop_reason = stop_reason  # (trial_id, last_result) -> (status, reason)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.table.start(recorded_id(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "step" in result:
            self.table.add_result(recorded_id(trial), trial_params(trial.config), result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        trial_id = recorded_id(trial)
        last = self.table.last_row(trial_id) or trial.last_result
        self.table.finish(trial_id, *self.stop_reason(trial_id, last))

    def on_trial_error(self, iteration, trials, trial, **info):
        message = str(trial.error_file or "")
        error = Path(message).read_text().strip().splitlines()[-1] if message and Path(message).exists() else "error"
        self.table.finish(recorded_id(trial), Status.ERROR, error[:500])
