"""The W&B mirror: offline runs read back from their .wandb files, and a tracker that fails or stalls never
holds up the sweep."""

from __future__ import annotations

import json
import struct
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from hpo.config.sweep_file import Tracking
from hpo.run.continuation import CONTINUES
from hpo.run.tracking import WandbMirror, rung_metrics, trial_summary, wandb_mirror, wandb_run_id

# The .wandb file is a LevelDB-style log of protobuf `Record`s: a 7-byte file header, then
# 32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type).
BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list:
    """Every record of an offline run's .wandb file, decoded (wandb 0.31 has no public reader)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B transaction log"
    records, pending, position = [], b"", HEADER
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        if left < HEADER:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        if length == 0 and kind == 0:  # zero padding to the end of the block
            position += left
            continue
        chunk = data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def read_run(run_folder: Path) -> dict:
    """name, group, config, history rows and final summary of one offline run folder."""
    (log_file,) = run_folder.glob("run-*.wandb")
    run = {"history": [], "summary": {}, "config": {}}
    for record in wandb_records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(
                name=record.run.display_name,
                group=record.run.run_group,
                job_type=record.run.job_type,
                run_id=record.run.run_id,
            )
            run["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run["history"].append(
                {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
        elif kind == "summary":
            run["summary"].update(
                {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update}
            )
    return run


def finished(run_folder: Path) -> bool:
    logs = list(run_folder.glob("run-*.wandb"))
    return bool(logs) and any(r.WhichOneof("record_type") == "exit" for r in wandb_records(logs[0]))


def read_runs(wandb_dir: Path, timeout: float = 30.0) -> dict[str, dict]:
    """Every offline run under a W&B directory, by display name.

    W&B's service process writes the log asynchronously: wait for each run's exit record.
    """
    folders = sorted(wandb_dir.glob("offline-run-*"))
    deadline = time.monotonic() + timeout
    while not all(finished(f) for f in folders) and time.monotonic() < deadline:
        time.sleep(0.2)
    runs = [read_run(folder) for folder in folders]
    return {run["name"]: run for run in runs}


def fake_trial(trial_id: str, config: dict, last: dict | None = None):
    return SimpleNamespace(trial_id=trial_id, config=config, last_result=last or {}, error_file=None)


RUNGS = [
    {"step": 4, "objective": -0.2, "domain_lift": -0.1, "general_regression": 0.1, "domain_exact_match": 0.5},
    {"step": 8, "objective": 0.3, "domain_lift": 0.35, "general_regression": 0.05, "domain_exact_match": 0.9},
    {"step": 12, "objective": 0.1, "domain_lift": 0.2, "general_regression": 0.1, "domain_exact_match": 0.8},
]


def test_rung_metrics_keep_numbers_and_drop_bookkeeping():
    result = {"step": 4, "objective": 0.5, "violation": "", "pid": 12, "config": {}, "nan": float("nan"), "ok": True}
    assert rung_metrics(result) == {"step": 4.0, "objective": 0.5}


def test_trial_summary_names_the_best_rung_and_the_ending():
    summary = trial_summary(RUNGS[1], 12, "stopped", "asha: below the rung cutoff at step 12")
    assert summary["objective"] == 0.3 and summary["best_step"] == 8 and summary["last_step"] == 12
    assert summary["status"] == "stopped" and summary["stop_reason"].startswith("asha")
    assert summary["domain_exact_match"] == 0.9  # the best rung's metrics, not the last one's
    assert trial_summary(None, None, "error", "boom") == {"status": "error", "stop_reason": "boom", "last_step": None}


def test_disabled_tracking_has_no_callback(tmp_path):
    assert wandb_mirror(Tracking(wandb="disabled"), tmp_path, "g", lambda *_: ("completed", "")) is None
    assert Tracking().wandb == "offline"  # the product default: no account, no network


def test_offline_runs_hold_every_rung_and_the_summary(tmp_path):
    mirror = WandbMirror(tmp_path, "offline", "forge-test", "sweep-x", lambda tid, last: ("stopped", "asha: cut"))
    trial = fake_trial("t1", {"learning_rate": 0.01, "lora_rank": 8}, last=RUNGS[-1])
    mirror.on_trial_start(0, [], trial)
    for rung in RUNGS:
        mirror.on_trial_result(0, [], trial, {**rung, "pid": 1, "violation": ""})
    mirror.on_trial_complete(0, [], trial)
    mirror.on_experiment_end([trial])
    runs = read_runs(tmp_path / "wandb")
    run = runs["trial-t1"]
    assert run["group"] == "sweep-x" and run["job_type"] == "trial"
    assert run["config"]["learning_rate"] == 0.01 and run["config"]["lora_rank"] == 8
    logged = [(row["step"], row["objective"]) for row in run["history"] if "objective" in row]
    assert logged == [(r["step"], r["objective"]) for r in RUNGS]  # every rung, against training steps
    assert run["summary"]["objective"] == 0.3 and run["summary"]["best_step"] == 8
    assert run["summary"]["status"] == "stopped" and run["summary"]["stop_reason"] == "asha: cut"


def test_a_failing_tracker_never_raises_and_stops_trying(tmp_path, monkeypatch):
    import wandb

    calls = []

    def broken_init(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", broken_init)
    mirror = WandbMirror(tmp_path, "online", "p", "g", lambda *_: ("completed", ""))
    for n in range(3):
        trial = fake_trial(f"t{n}", {"x": n})
        mirror.on_trial_start(0, [], trial)
        mirror.on_trial_result(0, [], trial, RUNGS[0])
        mirror.on_trial_complete(0, [], trial)
    assert mirror.drain(timeout=10)
    assert mirror.broken and len(calls) == 1  # tried once, then left alone


def test_a_stalled_tracker_does_not_slow_the_sweep(tmp_path, monkeypatch):
    import wandb

    release = threading.Event()

    def stalled_init(**kwargs):
        release.wait(10)
        raise TimeoutError("W&B did not answer")

    monkeypatch.setattr(wandb, "init", stalled_init)
    mirror = WandbMirror(tmp_path, "offline", "p", "g", lambda *_: ("completed", ""))
    started = time.perf_counter()
    trial = fake_trial("t1", {"x": 1})
    mirror.on_trial_start(0, [], trial)
    for rung in RUNGS * 50:
        mirror.on_trial_result(0, [], trial, rung)
    mirror.on_trial_complete(0, [], trial)
    assert time.perf_counter() - started < 0.5  # the hooks only enqueue
    assert mirror.drain(timeout=0.2) is False  # the end of a sweep waits a bounded time, then moves on
    release.set()  # the stalled call gives up: the mirror stops trying and skips what is queued
    assert mirror.drain(timeout=10) and mirror.broken


def test_the_callback_survives_ray_pickling_it(tmp_path):
    mirror = WandbMirror(tmp_path, "offline", "p", "g", lambda *_: ("completed", ""))
    mirror.submit(lambda: None)
    from ray import cloudpickle  # what Ray Tune saves its callbacks with

    restored = cloudpickle.loads(cloudpickle.dumps(mirror))
    assert (restored.run_dir, restored.mode, restored.group) == (tmp_path, "offline", "g")
    assert restored.worker is None and restored.events.empty()


def test_a_sweep_mirrors_every_trial_and_itself_offline(tiny_run):
    """The tiny sweep ran with the default tracking (offline): one run per trial plus the sweep's."""
    rows = pq.read_table(tiny_run / "trials.parquet").to_pylist()
    runs = read_runs(tiny_run / "wandb")
    trial_ids = {r["trial_id"] for r in rows}
    assert set(runs) == {f"trial-{t}" for t in trial_ids} | {"sweep"}
    assert {run["group"] for run in runs.values()} == {tiny_run.name}
    for trial_id in trial_ids:
        run = runs[f"trial-{trial_id}"]
        mine = sorted((r for r in rows if r["trial_id"] == trial_id), key=lambda r: r["step"])
        logged = [row for row in run["history"] if "objective" in row]
        assert [row["step"] for row in logged] == [r["step"] for r in mine]
        assert [row["objective"] for row in logged] == pytest.approx([r["objective"] for r in mine])
        assert run["summary"]["status"] == mine[-1]["status"]
        assert run["summary"]["objective"] == pytest.approx(max(r["objective"] for r in mine))
    sweep = runs["sweep"]
    assert sweep["summary"]["baseline/domain_exact_match"] is not None
    best = max(rows, key=lambda r: r["objective"])
    assert sweep["summary"]["best/objective"] == pytest.approx(best["objective"])
    tied = [r["param_learning_rate"] for r in rows if r["objective"] == pytest.approx(best["objective"])]
    assert any(sweep["summary"]["best/learning_rate"] == pytest.approx(lr) for lr in tied)  # ties: any of them
    assert sweep["summary"]["trials._type"] == "table-file"  # the final table, one row per trial
    assert sweep["summary"]["trials.nrows"] == len(trial_ids) == sweep["summary"]["trial_count"]


def test_a_resumed_trial_goes_on_in_its_own_w_and_b_run(tmp_path):
    """A resumed trial opened a second W&B run; now its new Ray trial reopens the first by id."""
    first = WandbMirror(tmp_path, "offline", "p", "sweep-x", lambda *_: ("stopped", ""))
    trial = fake_trial("t1", {"learning_rate": 0.01})
    first.on_trial_start(0, [], trial)
    first.on_trial_result(0, [], trial, RUNGS[0])
    first.on_experiment_end([trial])  # the sweep was interrupted here
    resumed = WandbMirror(tmp_path, "offline", "p", "sweep-x", lambda *_: ("completed", ""))
    again = fake_trial("new-ray-id", {"learning_rate": 0.01, CONTINUES: "t1"}, last=RUNGS[1])
    resumed.on_trial_start(0, [], again)
    resumed.on_trial_result(0, [], again, RUNGS[1])
    resumed.on_trial_complete(0, [], again)
    resumed.on_experiment_end([again])
    read_runs(tmp_path / "wandb")  # waits for both runs' exit records
    runs = [read_run(folder) for folder in sorted((tmp_path / "wandb").glob("offline-run-*"))]
    assert len(runs) == 2 and {run["run_id"] for run in runs} == {wandb_run_id("sweep-x", "trial-t1")}
    assert {run["name"] for run in runs} == {"trial-t1"}  # `wandb sync` appends the second to the first
    assert "continues_trial" not in runs[1]["config"] and runs[1]["config"]["learning_rate"] == 0.01
    assert [row["step"] for row in runs[1]["history"] if "objective" in row] == [8]
    assert runs[1]["summary"]["status"] == "completed"
