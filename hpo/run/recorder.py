"""Feeds trials.parquet, the sweep's record, from Ray Tune's driver-side events.

Whatever happens to trackers or trials, every rung that reached the driver is on disk:
the table (hpo.results.rundir.TrialTable) is rewritten atomically with every result and ending.
Rows are keyed by the trial's recorded id (hpo.run.continuation), so a trial that `hpo resume`
continued keeps its rows together. A trial that fails before its first rung gets a row of
its own, with the one line that says how it failed (hpo.run.workers.failure_line).
"""

from __future__ import annotations

from ray.tune import Callback
from ray.tune.experiment import Trial

from hpo.results.rundir import Status, TrialTable
from hpo.run.continuation import recorded_id, trial_params
from hpo.run.workers import failure_line


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
        self.table.finish(trial_id, *self.stop_reason(trial_id, last), trial_params(trial.config))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.table.finish(recorded_id(trial), Status.ERROR, failure_line(trial), trial_params(trial.config))

    def on_experiment_end(self, trials, **info):
        """Trials Ray failed without telling the callbacks (as it once did when a reused worker was not
        ready for them) are recorded as errors all the same."""
        for trial in trials:
            if trial.status == Trial.ERROR and not self.table.ended(recorded_id(trial)):
                self.on_trial_error(0, trials, trial)
