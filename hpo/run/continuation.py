"""One sweep trial, however many Ray trials run it.

`hpo resume` builds a new Tuner rather than restoring Ray's: the Optuna study and
trials.parquet are the record of what ran. A trial the stopped sweep left unfinished goes
on as a new Ray trial whose config carries `CONTINUES`, the Ray trial id it was first
recorded under. Whatever keys by trial (trials.parquet, ASHA's rungs, the live view, W&B,
the checkpoint folders under tune/) uses `recorded_id`, so the trial keeps one id from its
first rung to its last, and its new checkpoints sit next to its old ones.
"""

from __future__ import annotations

from typing import Any

CONTINUES = "continues_trial"
WORKER_LOSSES = "worker_losses"  # how often the trial's worker was lost, and why (hpo.run.workers)
ENGINE_KEYS = (CONTINUES, WORKER_LOSSES)  # config keys the engine adds to a trial's hyperparameters


def recorded_id(trial: Any) -> str:
    """The id a Ray trial's rungs are recorded under: its own, or the one of the trial it continues."""
    return trial.config.get(CONTINUES) or trial.trial_id


def trial_params(config: dict[str, Any]) -> dict[str, Any]:
    """A Ray trial's hyperparameters: its config without the keys the engine adds."""
    return {key: value for key, value in config.items() if key not in ENGINE_KEYS}


def trial_dirname(trial: Any) -> str:
    """tune/<trainable>_<recorded id>_<Ray trial id>: every Ray trial of one sweep trial matches `*_<recorded id>_*`."""
    return f"{trial.trainable_name}_{recorded_id(trial)}_{trial.trial_id}"
