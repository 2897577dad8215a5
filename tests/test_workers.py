"""hpo.run.workers: a worker's resident memory written down, and how a lost worker is judged."""

from __future__ import annotations

import os
import time

from ray.exceptions import ActorDiedError, RayTaskError

from hpo.run.workers import GB, ResidentWatch, judge, lost_worker, oom_kills, read_note

LOST = ActorDiedError()  # what Ray raises when a worker process dies mid-task


def note(rss_gb: float) -> dict:
    return {"pid": 1, "rss": int(rss_gb * GB)}


def test_the_largest_worker_killed_is_taken_as_ended_for_memory():
    loss = judge(LOST, note(11.1), [note(3.0), note(2.5)], oom_kills_rose=False)
    assert loss.memory
    assert loss.line == "worker killed at 11.1 GB resident, the most of the sweep's 3 workers: taken as out of memory"
    alone = judge(LOST, note(2.0), [], oom_kills_rose=False)
    assert alone.memory and "the sweep's only worker" in alone.line


def test_a_worker_smaller_than_a_sibling_died_for_another_reason():
    loss = judge(LOST, note(1.0), [note(3.0)], oom_kills_rose=False)
    assert not loss.memory
    assert loss.line == "worker died at 1.0 GB resident, less than another of the sweep's workers"


def test_the_kernels_count_and_rays_memory_monitor_decide_whatever_the_sizes():
    assert judge(LOST, note(1.0), [note(3.0)], oom_kills_rose=True).line.startswith(
        "worker ended by the kernel's OOM killer at 1.0 GB"
    )
    monitor = RuntimeError("Task was killed due to the node running low on memory.")
    assert judge(monitor, {}, [note(3.0)], oom_kills_rose=False).line == (
        "worker ended by Ray's memory monitor at an unknown resident size"
    )


def test_only_a_dead_worker_counts_as_lost_not_an_error_the_trial_raised():
    assert lost_worker(LOST)
    raised = RayTaskError("train", "Traceback ...", ValueError("bad value"))
    assert not lost_worker(raised) and not lost_worker(ValueError("bad value")) and not lost_worker(None)


def test_the_watch_keeps_the_workers_file_with_its_plan_and_resident_size(tmp_path):
    path = tmp_path / "workers" / "trial_a.json"
    watch = ResidentWatch(path, {"batch_size": 8, "grad_accum": 1})
    ballast = b"\1" * (64 * 1024**2)  # written, so resident
    watch.set_plan({"batch_size": 4, "grad_accum": 2})
    written = read_note(path)
    assert written["pid"] == os.getpid() and (written["batch_size"], written["grad_accum"]) == (4, 2)
    assert written["rss"] >= len(ballast) and written["peak_rss"] >= written["rss"] and not written.get("ended")
    assert time.time() - written["sampled_at"] < 60
    watch.stop()
    assert read_note(path)["ended"] and watch.peak >= len(ballast)
    assert read_note(tmp_path / "missing.json") == {}


def test_the_kernels_oom_kill_count_is_read_from_cgroup_v2_or_v1(tmp_path):
    v2, v1 = tmp_path / "memory.events", tmp_path / "memory.oom_control"
    v2.write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n")
    v1.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    assert oom_kills((v2, v1)) == 2
    assert oom_kills((tmp_path / "absent", v1)) == 5
    assert oom_kills((tmp_path / "absent",)) is None
