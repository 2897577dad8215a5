"""SIGINT and SIGTERM turned into a clean stop that `hpo resume` can finish.

`hpo sweep` and `hpo resume` install `StopSignals` before anything starts. Outside Ray
Tune's loop (the baseline, the run directory, the exports) a signal raises `Interrupted`
at once. Inside it, the first signal only asks Tune to stop (hpo.run.sweep's `SignalStopper`): Tune stops
every trial without telling the searcher or the record that it ended, so the Optuna study
and trials.parquet keep those trials running, and `hpo resume` continues them. A second
signal stops waiting for that. Tune's own SIGINT handler stays off
(`TUNE_DISABLE_SIGINT_HANDLER`): it would suggest `Tuner.restore(...)` and leave nothing
to tell SIGINT from SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SIGNAL_EXIT_BASE = 128  # a shell's exit status for a process ended by signal N is 128 + N


class Interrupted(Exception):
    """A stop signal arrived outside Ray Tune's loop (or a second one inside it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def exit_code(signum: int) -> int:
    """130 for SIGINT, 143 for SIGTERM."""
    return SIGNAL_EXIT_BASE + signum


class StopSignals:
    """Records the first stop signal; raises `Interrupted` unless Ray Tune's loop is running."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.in_tune = False

    def install(self) -> None:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handle)

    def handle(self, signum: int, frame: object) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if first and self.in_tune:
            return  # SignalStopper ends the Tune run at its next step
        raise Interrupted(self.received or signum)

    @contextlib.contextmanager
    def tune_loop(self) -> Iterator[None]:
        """While Tune runs, a first signal stops it cleanly instead of raising."""
        if self.received is not None:
            raise Interrupted(self.received)
        self.in_tune = True
        try:
            yield
        finally:
            self.in_tune = False

    def __getstate__(self) -> dict:
        return {"received": None, "in_tune": False}  # Tune pickles its run config; a handler is per process
