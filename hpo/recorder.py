"""Feeds trials.parquet, the sweep's record, from Ray Tune's driver-side events.

Whatever happens to trackers or trials, every rung that reached the driver is on disk:
the table (hpo.rundir.TrialTable) is rewritten atomically with every result and ending.
"""

from __future__ import annotations

from pathlib import Path

from ray.tune import Callback

from hpo.rundir import Status, TrialTable


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
        self.table.finish(trial.trial_id, Status.ERROR, error[:500])
