"""Every use of Ray's and Optuna's private API, each in one small function or name.

An upgrade that renames what they reach into breaks it here, in one place;
tests/test_compat.py checks each against the installed versions and names what to fix.
What is left: one logger name, the thread a reused trial worker waits for, and a
failure count taken back after a worker was ended for memory. A sweep resumes through
public API only (a new Tuner over the sweep's own record, hpo.run.sweep.resume_sweep; Optuna
trials re-attached through the study's storage, hpo.search.searcher.TPESearcher.running_trial).
"""

from __future__ import annotations

# Ray's logger for its "Token authentication is enabled for this Ray cluster" notice.
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def trial_thread():
    """The thread running this worker's trial function (Ray Tune's function trainable), or None outside
    a trial. Its session is `ray.train._internal.session`'s; Tune's `reset_config` joins the same thread."""
    from ray.train._internal.session import get_session

    session = get_session()
    return session.training_thread if session is not None else None


def forgive_failure(trial) -> None:
    """Take one failure off a Ray trial's count: a worker the OS ended for memory is retried with a smaller
    batch (hpo.run.workers) without using up the retries `FailureConfig.max_failures` gives other failures."""
    trial.run_metadata.num_failures = max(0, trial.run_metadata.num_failures - 1)
