"""TrainerCallbacks that watch, and fault, the ranks of multi-process trials (tests/test_distributed.py).

The test copies this module next to the sweep file and names its classes in
`training.callbacks`. Ranks run without Ray, so the callbacks know a rank by its process
(RANK in its environment, its pid) and keep their notes in `ranks.jsonl` in that folder.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
from transformers import TrainerCallback

FOLDER = Path(__file__).resolve().parent
LOG = FOLDER / "ranks.jsonl"
FIRST_RUNG = 4
KILL_STEP = FIRST_RUNG + 2  # past the first rung, before the second
WAIT_S = 60.0


def notes() -> list[dict]:
    return [json.loads(line) for line in LOG.read_text().splitlines()] if LOG.exists() else []


def note(kind: str, **fields) -> None:
    with LOG.open("a") as log:
        log.write(json.dumps({"kind": kind, "pid": os.getpid(), "rank": int(os.environ.get("RANK", "0")), **fields}) + "\n")


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def recorded_at(step: int) -> int:
    """How many rows at `step` the sweep's trials.parquet holds so far."""
    tables = sorted(FOLDER.glob("runs/*/trials.parquet"))
    rows = pq.read_table(tables[0]).to_pylist() if tables else []
    return sum(1 for row in rows if row["step"] == step)


class RankLog(TrainerCallback):
    """Notes each rank's start (with the ranks of earlier attempts still alive then) and every step."""

    def on_train_begin(self, args, state, control, **kwargs):
        earlier = {n["pid"] for n in notes() if n["kind"] == "begin"}
        note("begin", world=int(os.environ.get("WORLD_SIZE", "1")), alive=sorted(p for p in earlier if alive(p)))

    def on_step_end(self, args, state, control, **kwargs):
        note("step", step=state.global_step)


class KillRankOnce(TrainerCallback):
    """SIGKILLs rank 1 once, at KILL_STEP of the first trial that gets there, after the sweep recorded
    that trial's first rung (two rows at it: the trial ASHA stopped there, and this one)."""

    def on_step_end(self, args, state, control, **kwargs):
        marker = FOLDER / "killed.txt"
        if os.environ.get("RANK") != "1" or state.global_step != KILL_STEP or marker.exists():
            return
        deadline = time.monotonic() + WAIT_S
        while recorded_at(FIRST_RUNG) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # Ray registers the rung's checkpoint right after it records the result
        marker.write_text(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)
