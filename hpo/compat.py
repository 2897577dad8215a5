"""Every use of Ray's and Optuna's private API, each in one small function or name.

Neither offers a public way to do these. An upgrade that renames what they reach into
breaks it here, in one place; tests/test_compat.py checks each against the installed
versions and names the function to fix.
"""

from __future__ import annotations

import optuna
from ray import tune

# Ray's logger for its "Token authentication is enabled for this Ray cluster" notice.
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def running_trial(study: optuna.Study, number: int) -> optuna.Trial:
    """The study's trial `number`, still running, as an `optuna.Trial` to report on and tell.

    `Study.ask` only starts new trials, and a study does not show its storage, which maps a
    trial number to the storage's trial id; a restored searcher needs the trials that were
    running when its sweep stopped.
    """
    storage = study._storage
    study_id = storage.get_study_id_from_name(study.study_name)
    return optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def replace_tuner_settings(tuner: tune.Tuner, tune_config: tune.TuneConfig, run_config: tune.RunConfig) -> None:
    """Give a restored Tuner new settings (searcher, scheduler, callbacks).

    `Tuner.restore` brings back the settings pickled when the experiment started; Ray has
    no public way to replace them, so they are set on its internal tuner.
    """
    internal = tuner._local_tuner
    internal._tune_config = tune_config
    internal._run_config = run_config
