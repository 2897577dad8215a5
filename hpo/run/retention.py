"""Which rung checkpoints a sweep keeps on disk.

While a trial runs, Ray keeps its `keep` best-scoring checkpoints and its newest (the one
to resume from). Once a trial has ended (completed, stopped, diverged, or with a final
failing result), it keeps checkpoints only if it is the sweep's best trial so far, and
then only its `keep` best-scoring ones, its best rung always among them, so `hpo export`
finds the adapter. A trial that failed with an error (its worker lost too often) keeps
its own: `hpo resume` goes on from them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from hpo.results.rundir import Status, TrialTable, trial_checkpoints
from trainers.checkpoints import METRICS


def best_trials(rows: Iterable[dict[str, Any]]) -> set[str]:
    """The trials holding the sweep's top objective (several when tied)."""
    scored = [row for row in rows if row.get("objective") is not None]
    if not scored:
        return set()
    top = max(row["objective"] for row in scored)
    return {row["trial_id"] for row in scored if row["objective"] == top}


def folder_step(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / METRICS).read_text())["step"])
    except (OSError, ValueError, KeyError):
        return None


def kept_folders(folders: list[Path], objectives: dict[int, float], keep: int) -> list[Path]:
    """The `keep` folders whose rungs scored highest (earlier rungs first among equals)."""
    ranked = [(objectives[step], -step, folder) for folder in folders if (step := folder_step(folder)) in objectives]
    ranked.sort(key=lambda entry: entry[:2], reverse=True)
    return [folder for *_, folder in ranked[:keep]]


def prune(tune_dir: Path, table: TrialTable, keep: int) -> list[Path]:
    """Delete the checkpoints ended trials no longer need; returns the deleted folders."""
    rows = list(table.rows.values())
    best = best_trials(rows)
    deleted = []
    ended = {t for t in table.ended_trials() if table.status[t][0] != Status.RUNNING}  # finishing trials wait for Ray
    for trial_id in ended:
        folders = trial_checkpoints(tune_dir, trial_id)
        objectives = {
            int(row["step"]): row["objective"]
            for row in rows
            if row["trial_id"] == trial_id and row.get("objective") is not None
        }
        kept = kept_folders(folders, objectives, keep) if trial_id in best else []
        for folder in folders:
            if folder not in kept:
                shutil.rmtree(folder, ignore_errors=True)
                deleted.append(folder)
    return deleted


class CheckpointRetention(Callback):
    """Driver-side: prunes checkpoints whenever a trial ends and when the sweep ends.

    Listed after `RecordCallback`, so the ending it reads is already recorded.
    """

    def __init__(self, tune_dir: Path, table: TrialTable, keep: int) -> None:
        self.tune_dir, self.table, self.keep = Path(tune_dir), table, keep

    def on_trial_complete(self, iteration, trials, trial, **info):
        prune(self.tune_dir, self.table, self.keep)

    def on_experiment_end(self, trials, **info):
        prune(self.tune_dir, self.table, self.keep)
