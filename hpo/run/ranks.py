"""A trial over several processes: started as torchrun starts them, rank 0's rungs relayed, all ended together.

`train(recipe, report, workers, resume_from)` runs the recipe's trainer in `workers` fresh
processes (`python -m hpo.run.ranks`) on this node, with the environment torchrun gives
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, ...) and the GPUs Ray gave the
trial, each process taking its own by LOCAL_RANK (trainers.distributed). Rank 0's `report`
sends each rung over a socket to this process, which hands it to the trial's `report`
(hpo.run.trial: the objective, then ray.tune.report with the checkpoint) and answers whether
to stop; rank 0 tells the other ranks at the same step.

No rank outlives its trial or its peers: when one rank ends badly the others are ended at
once; when the trial ends (ASHA stops it, and ray.tune.report raises in this thread) every
rank is ended before this returns; a rank whose trial process dies is killed by the
kernel (a parent-death signal). A rank that runs out of memory, diverges or cannot score
writes what happened and that error is raised here again, so hpo.run.trial handles it as in
one process (out of memory: every rank restarts on half the micro-batch). Any other end
of a rank raises RanksFailed, which Ray retries from the newest complete checkpoint.

Fresh processes per attempt keep nothing of an earlier one: no process group, accelerator
memory or accelerate state to reset. Ray workers are not used as ranks for that reason.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainers.recipe import Recipe, save_recipe
from trainers.shared import Diverged, OutOfMemory, ScoringError

if TYPE_CHECKING:
    from trainers.rungs import Report

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.2
END_WAIT_S = 10.0  # a rank asked to end (SIGTERM) gets this long before SIGKILL
FINISH_WAIT_S = 300.0  # once one rank has finished, the others have this long to finish too
FAILED = 3  # a rank's exit code after it wrote its outcome
PR_SET_PDEATHSIG = 1


class RanksFailed(RuntimeError):
    """A rank of a multi-process trial ended other than by finishing or a known training error."""


@dataclass
class Rank:
    number: int
    process: subprocess.Popen

    @property
    def code(self) -> int | None:
        return self.process.poll()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_env(number: int, workers: int, port: int) -> dict[str, str]:
    """What torchrun sets for a process of a one-node run, and the import path of this tree."""
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "RANK": str(number),
        "LOCAL_RANK": str(number),
        "WORLD_SIZE": str(workers),
        "LOCAL_WORLD_SIZE": str(workers),
        "GROUP_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "PYTHONPATH": path,
    }


def start(folder: Path, workers: int, channel: socket.socket, resume_from: Path | None) -> list[Rank]:
    """Start every rank; rank 0 gets the socket its rungs go through."""
    port, ranks = free_port(), []
    try:
        for number in range(workers):
            command = [sys.executable, "-m", "hpo.run.ranks", str(folder), "--parent", str(os.getpid())]
            command += ["--resume-from", str(resume_from)] if resume_from else []
            fds: tuple[int, ...] = ()
            if number == 0:
                command += ["--channel", str(channel.fileno())]
                fds = (channel.fileno(),)
            process = subprocess.Popen(command, env=rank_env(number, workers, port), pass_fds=fds)
            ranks.append(Rank(number, process))
    except BaseException:
        end(ranks)  # the ones started before the failure
        raise
    return ranks


def first_failure(ranks: list[Rank]) -> Rank | None:
    return next((rank for rank in ranks if rank.code not in (None, 0)), None)


def straggler(ranks: list[Rank], since: float | None) -> Rank | None:
    """A rank still running FINISH_WAIT_S after another finished (it hangs: nothing it waits on will come)."""
    if since is None or time.monotonic() - since < FINISH_WAIT_S:
        return None
    return next((rank for rank in ranks if rank.code is None), None)


def relay(channel: socket.socket, ranks: list[Rank], report: Report) -> Rank | None:
    """Hand rank 0's rungs to `report` and its answers back, until every rank finished (None) or one
    failed (that rank)."""
    pending, listening, finished_at = b"", True, None
    while True:
        if failed := first_failure(ranks) or straggler(ranks, finished_at):
            return failed
        if all(rank.code == 0 for rank in ranks):
            return None
        if finished_at is None and any(rank.code == 0 for rank in ranks):
            finished_at = time.monotonic()
        readable, _, _ = select.select([channel] if listening else [], [], [], POLL_S)
        if not readable:
            continue
        data = channel.recv(1 << 20)
        listening = bool(data)  # an empty read: rank 0 closed its end, only the exit codes are left
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            rung = json.loads(line)
            stop = report(rung["step"], rung["metrics"], Path(rung["checkpoint"]))
            channel.sendall(json.dumps({"stop": bool(stop)}).encode() + b"\n")


def end(ranks: list[Rank]) -> None:
    """End every rank still running: SIGTERM, then SIGKILL after END_WAIT_S."""
    for rank in ranks:
        if rank.code is None:
            rank.process.terminate()
    for rank in ranks:
        try:
            rank.process.wait(timeout=END_WAIT_S)
        except subprocess.TimeoutExpired:
            rank.process.kill()
            rank.process.wait()


def outcome_file(folder: Path, number: int) -> Path:
    return folder / f"outcome-{number}.json"


def raise_failure(folder: Path, failed: Rank) -> None:
    """The training error a rank wrote down, else RanksFailed naming the rank that ended first."""
    outcomes = [json.loads(path.read_text()) for path in sorted(folder.glob("outcome-*.json"))]
    for outcome in outcomes:
        if outcome["error"] == "oom":
            raise OutOfMemory(outcome["step"], outcome["batch_size"])
        if outcome["error"] == "diverged":
            raise Diverged(outcome["step"], outcome["what"], outcome["value"])
        if outcome["error"] == "scoring":
            raise ScoringError(outcome["message"], outcome["step"])
    code = failed.code
    if code is None:
        how = f"nothing: it was still running {FINISH_WAIT_S:.0f} s after another rank finished"
    elif code < 0:
        how = f"signal {-code} ({signal.Signals(-code).name})"
    else:
        how = f"exit code {code}"
    raise RanksFailed(f"rank {failed.number} of the trial ended with {how}; the other ranks were ended")


def train(recipe: Recipe, report: Report, workers: int, resume_from: Path | None, work_dir: Path | None = None) -> None:
    """Train `recipe` over `workers` processes on this node, rank 0's rungs going to `report`."""
    with tempfile.TemporaryDirectory(prefix="ranks-", dir=work_dir) as scratch:
        folder = Path(scratch)
        save_recipe(folder / "recipe.yaml", recipe)
        ours, theirs = socket.socketpair()
        with ours:
            with theirs:
                ranks = start(folder, workers, theirs, resume_from)
            try:
                failed = relay(ours, ranks, report)
            finally:
                end(ranks)
        if failed is not None:
            raise_failure(folder, failed)


# --- one rank: `python -m hpo.run.ranks FOLDER` ------------------------------------------------------


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this rank when the trial process that started it ends (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the trial still ends its ranks itself
        pass
    if os.getppid() != parent:  # it ended before the signal was set
        os._exit(1)


class Relay:
    """Rank 0's `report`: each rung to the trial process, which answers whether to stop."""

    def __init__(self, fd: int) -> None:
        self.channel = socket.socket(fileno=fd).makefile("rw")

    def __call__(self, step: int, metrics: dict[str, float], checkpoint: Path) -> bool:
        self.channel.write(json.dumps({"step": step, "metrics": metrics, "checkpoint": str(checkpoint)}) + "\n")
        self.channel.flush()
        answer = self.channel.readline()
        if not answer:
            raise RanksFailed("the trial process closed the rung channel")
        return bool(json.loads(answer)["stop"])


def outcome(err: BaseException) -> dict | None:
    """A known training error as data the trial process raises again; None for any other."""
    if isinstance(err, OutOfMemory):
        return {"error": "oom", "step": err.step, "batch_size": err.batch_size}
    if isinstance(err, Diverged):
        return {"error": "diverged", "step": err.step, "what": err.what, "value": err.value}
    if isinstance(err, ScoringError):
        return {"error": "scoring", "step": err.step, "message": str(err)}
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpo.run.ranks", description="One rank of a multi-process trial.")
    parser.add_argument("folder", type=Path, help="the attempt's folder: recipe.yaml, outcomes, checkpoints")
    parser.add_argument("--parent", type=int, required=True, help="the trial process's id")
    parser.add_argument("--resume-from", type=Path, default=None)
    parser.add_argument("--channel", type=int, default=None, help="rank 0: the socket its rungs go through")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from trainers.distributed import rank
    from trainers.stages import STAGES, load_recipe

    recipe, _ = load_recipe(args.folder / "recipe.yaml")
    report = Relay(args.channel) if args.channel is not None else None
    try:
        STAGES[recipe.stage].train(recipe, report, work_dir=args.folder, resume_from=args.resume_from)
    except Exception as err:
        if (written := outcome(err)) is None:
            raise
        outcome_file(args.folder, rank()).write_text(json.dumps(written))
        log.error("rank %d: %s", rank(), err)
        return FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
