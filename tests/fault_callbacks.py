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
OOM_STEP = FIRST_RUNG + 2
WAIT_S = 60.0
STEP_PAUSE_S = 1.0
BALLAST_BYTES = 512 * 1024**2
SAMPLE_S = 1.0  # hpo.run.workers.SAMPLE_S


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


def note_attempt(step: int = 0) -> None:
    """One line per training attempt: the Ray trial id and the step the attempt started from."""
    with (FOLDER / "attempts.txt").open("a") as attempts:
        attempts.write(f"{tune.get_context().get_trial_id()} {step}\n")


def checkpoint_saved(trial_id: str, step: int) -> bool:
    """Whether the trial's complete checkpoint of `step` is in the run directory (hpo.results.rundir's layout)."""
    from hpo.results.rundir import RunDir, find_checkpoint

    runs = sorted(FOLDER.glob("runs/*"))
    return bool(runs) and find_checkpoint(RunDir(runs[0]), trial_id, step) is not None


class KillAfterFirstRung(TrainerCallback):
    """SIGKILLs its own process once, at KILL_STEP of the second trial.

    Before the kill, the driver must have recorded this trial's first rung and the rung's
    complete checkpoint must be in the run directory: the restarted trial goes on from it
    whether or not Ray registered it yet (hpo.run.trial.resume_point).
    """

    def on_train_begin(self, args, state, control, **kwargs):
        note_attempt(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        marker = FOLDER / "killed.txt"
        if marker.exists() or state.global_step != KILL_STEP:
            return
        me = tune.get_context().get_trial_id()
        if not any(row["trial_id"] != me for row in recorded()):
            return  # the first trial
        if first_rung_kept(me):
            marker.write_text(f"{me} {os.getpid()}\n")
            os.kill(os.getpid(), signal.SIGKILL)


def first_rung_kept(trial_id: str) -> bool:
    """Wait up to WAIT_S for the driver to record the trial's first rung and its complete checkpoint."""
    deadline = time.monotonic() + WAIT_S
    while not (
        any(r["trial_id"] == trial_id and r["step"] == FIRST_RUNG for r in recorded())
        and checkpoint_saved(trial_id, FIRST_RUNG)
    ):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


class KillTheLargest(TrainerCallback):
    """Once per sweep folder, at KILL_STEP of its first trial that gets there: holds BALLAST_BYTES more than
    its siblings until the worker's memory watch has sampled it (hpo.run.workers), then SIGKILLs its own process,
    as the kernel's OOM killer ends the largest process."""

    def on_step_end(self, args, state, control, **kwargs):
        marker = FOLDER / "killed.txt"
        if state.global_step != KILL_STEP or marker.exists():
            return
        me = tune.get_context().get_trial_id()
        marker.write_text(f"{me} {os.getpid()}\n")
        if first_rung_kept(me):
            ballast = torch.ones(BALLAST_BYTES // 4)  # touched: resident
            time.sleep(3 * SAMPLE_S)
            os.kill(os.getpid(), signal.SIGKILL)
            del ballast


class SlowSteps(TrainerCallback):
    """A pause after every step past the first rung, so that a trial of the tiny model that went on
    lasts long enough to interrupt."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step > FIRST_RUNG:
            time.sleep(STEP_PAUSE_S)


class Faults(TrainerCallback):
    """By trial: the first runs out of memory at OOM_STEP, past its first rung's checkpoint, while its
    micro-batch is above 2 (each retry goes on from that checkpoint); the second at step 2 at every
    batch size; the third diverges (its trainable weights become NaN at step 2)."""

    def on_train_begin(self, args, state, control, **kwargs):
        note_attempt(state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        number = trial_number()
        if number == 0 and state.global_step == OOM_STEP and args.per_device_train_batch_size > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        if state.global_step != 2:
            return
        if number == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        if number == 2:
            with torch.no_grad():
                for parameter in model.parameters():
                    if parameter.requires_grad:
                        parameter.fill_(float("nan"))


class FailEveryWay(TrainerCallback):
    """By trial: the first drifts off general text past any regression limit (noise added to its trainable
    weights after every step: finite, but far from the base model), the second diverges at step 2, the
    third raises at step 1 on every attempt."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        number = trial_number()
        if number == 0:
            noise = torch.Generator().manual_seed(state.global_step)
            with torch.no_grad():
                for parameter in model.parameters():
                    if parameter.requires_grad:
                        parameter.add_(0.3 * torch.randn(parameter.shape, generator=noise))
        elif number == 1 and state.global_step == 2:
            with torch.no_grad():
                for parameter in model.parameters():
                    if parameter.requires_grad:
                        parameter.fill_(float("nan"))
        elif number == 2:
            raise RuntimeError("injected failure")

