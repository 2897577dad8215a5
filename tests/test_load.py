"""A crowded machine on the tiny model: two sweeps at once, Tune's wait for a reused worker set to 0 s
(as on cores too busy for a trial's tear-down to end within it), and a worker SIGKILLed mid-training
while it holds more memory than its siblings, as the kernel's OOM killer ends the largest process.
Every trial of both sweeps ends with a result, and the lost worker is one line in the live view."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from tests.test_faults import FIRST_RUNG, fault_sweep

TRIALS = 3
WAIT_S = 300
MEMORY_LINE = re.compile(
    r"trial \d+: worker killed at [\d.]+ GB resident, the (most of the sweep's \d+ workers|sweep's only worker): "
    rf"taken as out of memory; it goes on from step {FIRST_RUNG} with half the micro-batch"
)


def crowded_sweep(folder: Path, callbacks: list[str]) -> Path:
    """The fault sweep with two trials at a time, so that workers are reused and have siblings."""
    path = fault_sweep(folder, trials=TRIALS, callbacks=callbacks)
    document = yaml.safe_load(path.read_text())
    document["budget"] = {"trials": TRIALS, "concurrency": 2}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def final_rows(run_dir: Path) -> dict[str, list[dict]]:
    trials: dict[str, list[dict]] = {}
    for row in pq.read_table(run_dir / "trials.parquet").to_pylist():
        trials.setdefault(row["trial_id"], []).append({k: v for k, v in row.items() if v is not None})
    return trials


def test_two_crowded_sweeps_lose_no_trial_and_a_worker_killed_for_memory_goes_on_with_half_the_batch(
    tiny, tiny_source, tmp_path
):
    other = tmp_path / "other"
    shutil.copytree(tiny_source, other)
    crowded_sweep(tiny, ["KillTheLargest"])
    crowded_sweep(other, [])
    env = {**os.environ, "TUNE_FUNCTION_THREAD_TIMEOUT_S": "0"}
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-m", "hpo", "sweep", "sweep.yaml"],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for folder in (tiny, other)
    ]
    outputs = [sweep.communicate(timeout=WAIT_S)[0] for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0], outputs
    for folder, output in zip((tiny, other), outputs, strict=True):
        (run_dir,) = (folder / "runs").iterdir()
        trials = final_rows(run_dir)
        assert len(trials) == TRIALS, output
        assert all(rows[-1]["status"] in ("completed", "stopped") for rows in trials.values()), trials
        assert "Traceback" not in output and "ActorDiedError" not in output
    killed, _ = (tiny / "killed.txt").read_text().split()
    rows = final_rows(next((tiny / "runs").iterdir()))[killed]
    assert [(r["step"], r["batch_size"], r["grad_accum"]) for r in rows] == [(FIRST_RUNG, 8, 1), (8, 4, 2)], rows
    assert rows[1]["resumed_from_step"] == FIRST_RUNG
    print(outputs[0])  # what a user sees, shown with -s
    assert len(MEMORY_LINE.findall(outputs[0])) == 1, outputs[0]
    assert not MEMORY_LINE.search(outputs[1])
