"""TrainerCallbacks that make faults happen at set points of a tiny sweep (tests/test_faults.py).

tests/test_faults.py copies this module next to the sweep file and names its classes in
`training.callbacks`. They keep their marks in that folder, so each fault happens the
number of times a test expects, and they read the sweep's own record to know which trial
they are in (the sweeps run one trial at a time, all with the same configuration).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
from ray import tune
from transformers import TrainerCallback

FOLDER = Path(__file__).resolve().parent
FIRST_RUNG = 4  # the tiny sweeps' rung_interval
KILL_STEP = FIRST_RUNG + 2  # past the first rung, before the second
WAIT_S = 60.0
STEP_PAUSE_S = 1.0


def recorded() -> list[dict]:
    """The rows of the sweep's trials.parquet so far (one run directory under runs/)."""
    tables = sorted(FOLDER.glob("runs/*/trials.parquet"))
    return pq.read_table(tables[0]).to_pylist() if tables else []


def trial_number() -> int:
    """0 for the first trial this sweep folder saw, 1 for the second, and so on."""
    seen = FOLDER / "trials_seen.txt"
    trial_id = tune.get_context().get_trial_id()
    order = seen.read_text().split() if seen.exists() else []
    if trial_id not in order:
        order.append(trial_id)
        seen.write_text("\n".join(order) + "\n")
    return order.index(trial_id)


def note_attempt() -> None:
    with (FOLDER / "attempts.txt").open("a") as attempts:
        attempts.write(f"{tune.get_context().get_trial_id()}\n")


class KillAfterFirstRung(TrainerCallback):
    """SIGKILLs its own process once, at KILL_STEP of a trial that went on past its first rung.

    The first trial is left alone: strict ASHA stops it at its first rung, as nothing can
    be promoted before a rung holds enough trials. Before the kill, the driver must have
    recorded this trial's first rung, and a moment is left for Ray to register that rung's
    checkpoint (it does so right after recording the result).
    """

    def on_train_begin(self, args, state, control, **kwargs):
        note_attempt()

    def on_step_end(self, args, state, control, **kwargs):
        marker = FOLDER / "killed.txt"
        if marker.exists() or state.global_step != KILL_STEP:
            return
        me = tune.get_context().get_trial_id()
        if not any(row["trial_id"] != me for row in recorded()):
            return  # the first trial
        deadline = time.monotonic() + WAIT_S
        while not any(r["trial_id"] == me and r["step"] == FIRST_RUNG for r in recorded()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
        time.sleep(2.0)
        marker.write_text(f"{me} {os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)


class SlowSteps(TrainerCallback):
    """A pause after every step past the first rung, so that a trial of the tiny model that went on
    lasts long enough to interrupt."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step > FIRST_RUNG:
            time.sleep(STEP_PAUSE_S)


class Faults(TrainerCallback):
    """By trial: the first runs out of memory at step 2 while its micro-batch is above 2, the
    second at every batch size, the third diverges (its trainable weights become NaN at step 2)."""

    def on_train_begin(self, args, state, control, **kwargs):
        note_attempt()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != 2:
            return
        number = trial_number()
        if (number == 0 and args.per_device_train_batch_size > 2) or number == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        if number == 2:
            with torch.no_grad():
                for parameter in model.parameters():
                    if parameter.requires_grad:
                        parameter.fill_(float("nan"))
