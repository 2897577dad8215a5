"""Where a sweep's time went: its phases (baseline, trials, held-out check, exports), and within
the trials, training, rung probes and the engine's overhead around them.

A phase is timed where its work runs (`phase("baseline")` around the function or block), into
the running command's `PHASES`; `hpo sweep` prints them at its end (`where_the_time_went`).

A trial's wall time runs from the driver starting it to its last result reaching the
driver (trials.parquet: `trial_started_at`, `recorded_at`); its trainer reports the
seconds it spent training and probing (`train_seconds`, `probe_seconds`, counted over
every attempt of the trial). What is left is overhead: the worker's start and imports
on its first trial, model load, tokenization, rung checkpoints and reports. (In a sweep
resumed with `hpo resume`, a trial that was running when the driver stopped also counts
the time until the resume as overhead.)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrialTime:
    trial_id: str
    started_at: float
    wall: float
    train: float
    probes: float
    tokens: float

    @property
    def overhead(self) -> float:
        return self.wall - self.train - self.probes

    @property
    def overhead_share(self) -> float:
        return self.overhead / self.wall if self.wall > 0 else 0.0


def trial_times(rows: Iterable[dict[str, Any]]) -> list[TrialTime]:
    """One TrialTime per trial that reported a training rung, in the order trials started."""
    last_rung: dict[str, dict[str, Any]] = {}
    last_seen: dict[str, float] = {}
    for row in rows:
        trial_id = row["trial_id"]
        if row.get("recorded_at") is not None:
            last_seen[trial_id] = max(last_seen.get(trial_id, 0.0), row["recorded_at"])
        if row.get("train_seconds") is None or row.get("trial_started_at") is None:
            continue  # a failing ending reports no training
        if trial_id not in last_rung or row["step"] > last_rung[trial_id]["step"]:
            last_rung[trial_id] = row
    times = [
        TrialTime(
            trial_id=trial_id,
            started_at=row["trial_started_at"],
            wall=last_seen[trial_id] - row["trial_started_at"],
            train=row["train_seconds"],
            probes=row.get("probe_seconds") or 0.0,
            tokens=row.get("tokens_seen") or 0.0,
        )
        for trial_id, row in last_rung.items()
    ]
    return sorted(times, key=lambda t: t.started_at)


def time_summary(times: list[TrialTime]) -> str:
    """One line: the trials' summed wall time and its shares, and the overhead per trial."""
    if not times:
        return "trial time: no trial reported a training rung"
    wall = sum(t.wall for t in times)
    train, probes = sum(t.train for t in times), sum(t.probes for t in times)
    overhead = wall - train - probes
    tokens = sum(t.tokens for t in times)
    speed = f"; {tokens / train:.0f} tokens/s while training" if tokens and train > 0 else ""
    return (
        f"trial time: {wall:.0f} s over {len(times)} trials: training {train / wall:.1%}, probes {probes / wall:.1%}, "
        f"engine overhead {overhead / wall:.1%} ({overhead / len(times):.1f} s per trial){speed}"
    )


@dataclass
class Phases:
    """Wall-clock seconds of the running command's phases, in the order they first ran, and what the
    work of a phase noted about it (e.g. that its figures came from a cache)."""

    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.perf_counter
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def reset(self) -> None:
        self.seconds.clear()
        self.notes.clear()
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started


PHASES = Phases()  # the running command's; `hpo sweep` resets it as it starts
# Phase names, as the work that runs them records them.
BASELINE, RAY_START, TRIALS, HELD_OUT, EXPORTS, MIRROR = (
    "baseline",
    "Ray start",
    "trials",
    "held-out check",
    "exports",
    "W&B mirror",
)


@contextlib.contextmanager
def phase(name: str, phases: Phases = PHASES) -> Iterator[None]:
    """Add the wall time of the block (or of each call of the decorated function) to phase `name`."""
    started = phases.clock()
    try:
        yield
    finally:
        phases.seconds[name] = phases.seconds.get(name, 0.0) + phases.clock() - started


def note(name: str, text: str, phases: Phases = PHASES) -> None:
    """Say something about phase `name` where the time is shown (the work that runs it knows)."""
    phases.notes[name] = text


def where_the_time_went(phases: Phases, times: list[TrialTime], concurrency: int) -> list[str]:
    """The command's wall time by phase with its share and note, the trials' phase split into training,
    probes and engine overhead (shares of the trials' summed time), and what is left as `other`."""
    total = phases.elapsed()
    notes = dict(phases.notes)
    if times:
        wall = sum(t.wall for t in times)
        train, probes = sum(t.train for t in times), sum(t.probes for t in times)
        notes[TRIALS] = (
            f"training {train / wall:.0%}, probes {probes / wall:.0%}, engine overhead {(wall - train - probes) / wall:.0%}"
            f" of {wall:.0f} s of trial time ({len(times)} trials, up to {concurrency} at a time)"
        )
    rows = list(phases.seconds.items())
    rows.append(("other", max(total - sum(phases.seconds.values()), 0.0)))
    width = max(len(name) for name, _ in rows)
    lines = [f"where the time went: {total / 60:.1f} min in all"]
    for name, seconds in rows:
        share = seconds / total if total > 0 else 0.0
        note = f"  {notes[name]}" if name in notes else ""
        lines.append(f"  {name.ljust(width)}  {seconds / 60:5.1f} min  {share:4.0%}{note}")
    return lines
