"""Where a sweep's trial time went: training, rung probes, and the engine's overhead around them.

A trial's wall time runs from the driver starting it to its last result reaching the
driver (trials.parquet: `trial_started_at`, `recorded_at`); its trainer reports the
seconds it spent training and probing (`train_seconds`, `probe_seconds`, counted over
every attempt of the trial). What is left is overhead: the worker's start and imports
on its first trial, model load, tokenization, rung checkpoints and reports. (In a sweep
resumed with `hpo resume`, a trial that was running when the driver stopped also counts
the time until the resume as overhead.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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
