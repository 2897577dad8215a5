"""Every use of Ray's and Optuna's private API, each in one small function or name.

An upgrade that renames what they reach into breaks it here, in one place;
tests/test_compat.py checks each against the installed versions and names what to fix.
What is left is one logger name: a sweep resumes through public API only (a new Tuner
over the sweep's own record, hpo.sweep.resume_sweep; Optuna trials re-attached through
the study's storage, hpo.searcher.TPESearcher.running_trial).
"""

from __future__ import annotations

# Ray's logger for its "Token authentication is enabled for this Ray cluster" notice.
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
