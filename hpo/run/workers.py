"""A trial's worker process seen from both sides: what it holds, and why it was lost.

The worker (hpo.run.trial) keeps one small file per trial, RUN/workers/<trial id>.json
(hpo.results.rundir names it, this module owns what is in it): its process id, the batch plan it
trains with, and its resident memory with its child processes', sampled every SAMPLE_S
seconds (`ResidentWatch`). A worker that dies keeps its last sample there.

When Ray reports a trial's worker lost, the driver (`LostWorkers`, a Tune callback) judges
whether the OS ended it for memory: Ray's memory monitor said so, the kernel's OOM-kill
count of this machine's memory cgroup rose, or the worker held at least as much memory as
each of the sweep's other live workers at its last sample (the kernel's OOM killer ends the
largest process; a worker killed by hand while it was the largest reads the same, and its
retry merely takes a smaller batch). A worker ended for memory is retried from its newest
checkpoint with half the micro-batch and twice the accumulation, as running out of
accelerator memory is (hpo.run.trial), and does not use up the retry other failures get; at
batch size 1 the trial ends as an error. The trial's config carries the count
(`WORKER_LOSSES`), which is how the next attempt learns it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from ray import cloudpickle
from ray.exceptions import RayActorError, RayTaskError
from ray.tune import Callback
from ray.tune.experiment import Trial

from hpo.results.rundir import RunDir
from hpo.run.compat import forgive_failure
from hpo.run.continuation import WORKER_LOSSES, recorded_id

SAMPLE_S = 1.0  # seconds between two samples of a worker's resident memory
GB = 1024**3
# Where the kernel counts the processes its OOM killer ended in this machine's (or container's)
# memory cgroup: cgroup v2, then v1.
OOM_KILL_FILES = (Path("/sys/fs/cgroup/memory.events"), Path("/sys/fs/cgroup/memory/memory.oom_control"))
RAY_MEMORY_MONITOR = "low on memory"  # in the exit reason of a worker Ray's memory monitor ended
MAX_LINE = 500  # characters of an error's last line that the record and the live view keep


def resident_bytes(process: psutil.Process) -> int:
    """Resident memory of a process and its children (a trial over several processes, hpo.run.ranks)."""
    total = 0
    for each in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            total += each.memory_info().rss
    return total


def read_note(path: Path) -> dict[str, Any]:
    """A worker file's contents; empty when there is none (or a write was cut short)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_note(path: Path, note: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(note))
    tmp.replace(path)


class ResidentWatch:
    """In the worker: samples its resident memory on a daemon thread and keeps the trial's worker file."""

    def __init__(self, path: Path, plan: dict[str, float]) -> None:
        self.path = path
        self.process = psutil.Process()
        self.note: dict[str, Any] = {"pid": os.getpid(), "started_at": time.time(), **plan}
        self.peak = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.sample()
        self.thread = threading.Thread(target=self.run, name="resident-watch", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> int:
        rss = resident_bytes(self.process)
        with self.lock:
            self.peak = max(self.peak, rss)
            self.note.update(rss=rss, peak_rss=self.peak, sampled_at=time.time())
            write_note(self.path, self.note)
        return rss

    def set_plan(self, plan: dict[str, float]) -> None:
        with self.lock:
            self.note.update(plan)
        self.sample()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        with self.lock:
            self.note["ended"] = True
            write_note(self.path, self.note)


def oom_kills(files: tuple[Path, ...] = OOM_KILL_FILES) -> int | None:
    """How many processes the kernel's OOM killer has ended in this memory cgroup; None where unreadable."""
    for path in files:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                name, _, count = line.partition(" ")
                if name == "oom_kill":
                    return int(count)
    return None


def worker_error(trial: Any) -> BaseException | None:
    """The error Ray recorded for the trial's latest failure, when it kept a copy it can load."""
    path = trial.pickled_error_file
    if not path or not Path(path).is_file():
        return None
    try:
        with open(path, "rb") as handle:
            return cloudpickle.load(handle)
    except Exception:  # noqa: BLE001 - an error that cannot be loaded here is judged as not a lost worker
        return None


def lost_worker(error: BaseException | None) -> bool:
    """Whether the failure is the trial's worker process dying (rather than the trial raising)."""
    if isinstance(error, RayTaskError):
        error = error.as_instanceof_cause()
    return isinstance(error, RayActorError)


@dataclass(frozen=True)
class Loss:
    """Why a trial's worker was lost, in one line, and whether it was for memory."""

    memory: bool
    line: str


def judge(error: BaseException, note: dict[str, Any], siblings: list[dict[str, Any]], oom_kills_rose: bool) -> Loss:
    """Whether the OS ended a lost worker for memory, from Ray's exit reason, the kernel's OOM-kill count
    and the worker's last resident size against its live siblings' (`siblings`: their worker files)."""
    rss = note.get("rss")
    held = f"{rss / GB:.1f} GB resident" if rss else "an unknown resident size"
    if RAY_MEMORY_MONITOR in str(error):
        return Loss(True, f"worker ended by Ray's memory monitor at {held}")
    if oom_kills_rose:
        return Loss(True, f"worker ended by the kernel's OOM killer at {held}")
    others = [s["rss"] for s in siblings if s.get("rss")]
    if rss and all(rss >= other for other in others):
        most = f"the most of the sweep's {len(others) + 1} workers" if others else "the sweep's only worker"
        return Loss(True, f"worker killed at {held}, {most}: taken as out of memory")
    return Loss(False, f"worker died at {held}, less than another of the sweep's workers")


class LostWorkers(Callback):
    """Driver side: judges each lost worker and tells the trial's next attempt through its config.

    Placed before the callbacks that show and record a trial's failure: they read the line
    this one leaves in the trial's config (`failure_line`).
    """

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.oom_kills = oom_kills()

    def on_trial_recover(self, iteration, trials, trial, **info):
        if self.note_loss(trial, trials):
            forgive_failure(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.note_loss(trial, trials)

    def note_loss(self, trial: Any, trials: list) -> bool:
        """Record why the trial's worker was lost in its config; True when it was for memory."""
        error = worker_error(trial)
        if error is None or not lost_worker(error):
            return False
        kills = oom_kills()
        rose = kills is not None and self.oom_kills is not None and kills > self.oom_kills
        self.oom_kills = kills
        trial_id = recorded_id(trial)
        siblings = [
            read_note(self.run.worker_file(recorded_id(other)))
            for other in trials
            if other is not trial and other.status == Trial.RUNNING
        ]
        loss = judge(error, read_note(self.run.worker_file(trial_id)), [s for s in siblings if alive(s)], rose)
        losses = dict(trial.config.get(WORKER_LOSSES) or {})
        kind = "memory" if loss.memory else "other"
        losses.update({kind: int(losses.get(kind, 0)) + 1, "last": loss.line, "last_for_memory": loss.memory})
        trial.set_config({**trial.config, WORKER_LOSSES: losses})
        return loss.memory


def alive(note: dict[str, Any]) -> bool:
    return bool(note.get("pid")) and not note.get("ended") and psutil.pid_exists(int(note["pid"]))


def failure_line(trial: Any) -> str:
    """A trial's latest failure in one line: how its worker was lost (as `LostWorkers` judged it, earlier in
    the same event), or the last line of the error it raised."""
    error = worker_error(trial)
    if error is not None and lost_worker(error):
        return (trial.config.get(WORKER_LOSSES) or {}).get("last") or "worker lost"
    path = trial.error_file
    text = Path(path).read_text().strip() if path and Path(path).is_file() else ""
    return (text.splitlines()[-1] if text else "error")[:MAX_LINE]


def lost_for_memory(trial: Any) -> bool:
    """Whether the trial's latest lost worker was ended for memory (as `LostWorkers` judged it)."""
    return bool((trial.config.get(WORKER_LOSSES) or {}).get("last_for_memory"))


def memory_kills(config: dict[str, Any]) -> int:
    """How many times the OS ended this trial's worker for memory (the trial's config, set by `LostWorkers`)."""
    return int((config.get(WORKER_LOSSES) or {}).get("memory", 0))
