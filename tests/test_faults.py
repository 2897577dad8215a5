"""Crash safety on the tiny model: real sweeps, real signals, real out-of-memory errors and divergence,
and the exit code and line each ending gives.

The sweeps here run one trial at a time, every trial with the same configuration, so
strict ASHA's decisions are known in advance (a sweep this small sends a rung's leader on;
later trials tie with it and go on too). Faults come from `training.callbacks`
(tests/fault_callbacks.py, copied next to the sweep file).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
import yaml

from hpo.config.errors import EXIT_TRIAL_ERRORS, InputError
from hpo.config.sweep_file import load_sweep
from hpo.results.rundir import RunDir, TrialTable, find_checkpoint, read_rows
from hpo.run.retention import best_trials, prune
from hpo.run.trial import halved_batch, start_plan
from trainers.checkpoints import copy_weights, is_complete, mark_complete, newest_complete

CALLBACKS = Path(__file__).parent / "fault_callbacks.py"
FIRST_RUNG = 4
POLL_S = 0.2
DRIVER_WAIT_S = 240


def fault_sweep(tiny: Path, trials: int, callbacks: list[str], max_steps: int = 8) -> Path:
    """The tiny sweep, one trial at a time, every trial alike, with `callbacks` from fault_callbacks."""
    shutil.copy(CALLBACKS, tiny / CALLBACKS.name)
    space = {
        "stage": "sft",
        "method": "lora",
        "parameters": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.01, "default": 0.01}},
    }
    (tiny / "space_one.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    document = yaml.safe_load((tiny / "sweep.yaml").read_text())
    document.update(
        search_space="space_one.yaml",
        budget={"trials": trials, "concurrency": 1},
        scheduler={"rung_interval": FIRST_RUNG, "max_steps": max_steps, "reduction_factor": 2},
        tracking={"wandb": "disabled"},
        checkpoints={"keep": 1},
    )
    document["training"]["callbacks"] = [f"fault_callbacks:{name}" for name in callbacks]
    (tiny / "sweep.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return tiny / "sweep.yaml"


def hpo(*args: str, cwd: Path, code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == code, (done.returncode, done.stderr[-3000:])
    return done


def attempts_of(tiny: Path) -> list[tuple[str, int]]:
    """(Ray trial id, the step the attempt started from) for every training attempt, in order."""
    return [
        (trial, int(step))
        for trial, step in (line.split() for line in (tiny / "attempts.txt").read_text().splitlines())
    ]


def study_of(run_dir: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal")))
    return optuna.load_study(study_name="tiny", storage=storage)


def by_trial(run_dir: Path) -> dict[str, list[dict]]:
    """Each trial's rows, without the empty cells of columns other rows brought."""
    trials: dict[str, list[dict]] = {}
    for row in pq.read_table(run_dir / "trials.parquet").to_pylist():
        trials.setdefault(row["trial_id"], []).append({k: v for k, v in row.items() if v is not None})
    return trials


def assert_checkpoints_pruned(run_dir: Path, keep: int) -> None:
    """Ended trials keep checkpoints only if they hold the top objective, and then at most `keep`."""
    rows = pq.read_table(run_dir / "trials.parquet").to_pylist()
    best = best_trials(rows)
    for trial_id in {row["trial_id"] for row in rows}:
        folders = sorted((run_dir / "tune").glob(f"*_{trial_id}_*/checkpoint_*"))
        assert len(folders) <= (keep if trial_id in best else 0), (trial_id, folders)
    best_row = max(rows, key=lambda row: row["objective"])
    assert find_checkpoint(RunDir(run_dir), best_row["trial_id"], best_row["step"]) is not None


@pytest.mark.slow  # tests/test_load.py kills a worker mid-training and checks it goes on from its rung
def test_a_killed_worker_goes_on_from_its_last_rung_checkpoint(tiny):
    fault_sweep(tiny, trials=2, callbacks=["KillAfterFirstRung"])
    hpo("sweep", "sweep.yaml", "--quiet", cwd=tiny)
    (run_dir,) = (tiny / "runs").iterdir()
    killed_trial, _ = (tiny / "killed.txt").read_text().split()
    attempts = attempts_of(tiny)
    assert [step for trial, step in attempts if trial == killed_trial] == [0, FIRST_RUNG]  # restarted from the rung
    trials = by_trial(run_dir)
    assert len(trials) == 2 and all(rows[0]["status"] in ("completed", "stopped") for rows in trials.values())
    rows = trials[killed_trial]
    assert [row["step"] for row in rows] == [4, 8] and rows[0]["status"] == "completed"
    assert rows[0].get("resumed_from_step") is None
    assert rows[1]["resumed_from_step"] == FIRST_RUNG  # not step 0
    assert rows[1]["tokens_seen"] > rows[0]["tokens_seen"]
    assert_checkpoints_pruned(run_dir, keep=1)
    assert not list((run_dir / "best" / "adapter").glob("optimizer.pt"))


def test_out_of_memory_halves_the_batch_and_divergence_is_never_retried(tiny):
    fault_sweep(tiny, trials=3, callbacks=["Faults"])
    done = hpo("sweep", "sweep.yaml", "--quiet", cwd=tiny, code=EXIT_TRIAL_ERRORS)  # a best, and a trial in error
    assert "ended in error: out of memory at batch size 1 (grad_accum 8)" in done.stderr
    assert "the best recipe is the best of the 2 trials that did not fail (3 in the budget)" in done.stderr
    (run_dir,) = (tiny / "runs").iterdir()
    order = (tiny / "trials_seen.txt").read_text().split()
    attempts = attempts_of(tiny)
    trials = by_trial(run_dir)
    retried, exhausted, diverged = (trials[trial_id] for trial_id in order)
    # out of memory past the first rung's checkpoint while above batch 2: 8 -> 4 -> 2, the effective batch
    # kept at 8, and each retry goes on from that checkpoint rather than from step 0
    assert [step for trial, step in attempts if trial == order[0]] == [0, FIRST_RUNG, FIRST_RUNG]
    assert [(r["step"], r["batch_size"], r["grad_accum"], r["oom_retries"]) for r in retried] == [
        (FIRST_RUNG, 8, 1, 0),
        (8, 2, 4, 2),
    ]
    assert retried[-1]["resumed_from_step"] == FIRST_RUNG and retried[-1]["status"] in ("completed", "stopped")
    # out of memory at every size: 8 -> 4 -> 2 -> 1, then a failing row with the reason
    assert [step for trial, step in attempts if trial == order[1]] == [0, 0, 0, 0]
    (last,) = exhausted
    assert (last["batch_size"], last["grad_accum"], last["oom_retries"], last["oom"]) == (1, 8, 3, 1.0)
    assert last["status"] == "error" and last["stop_reason"].startswith("out of memory at batch size 1")
    assert last["objective"] == -10.0
    # divergence: one attempt, a failing final row, never retried by Ray
    assert [trial for trial, _ in attempts].count(order[2]) == 1
    (row,) = diverged
    assert row["status"] == "diverged" and row["diverged"] == 1.0 and "nan" in row["stop_reason"]
    # the scheduler and the searcher saw only finite objectives
    study = study_of(run_dir)
    values = [v for t in study.trials for v in [t.value, *t.intermediate_values.values()] if v is not None]
    assert values and all(abs(v) < float("inf") for v in values)
    assert all(t.state.is_finished() for t in study.trials)
    assert_checkpoints_pruned(run_dir, keep=1)


def session_processes(session: int) -> list[int]:
    """Live (not zombie) processes of a session: everything `hpo sweep`, started as its leader, started."""
    listing = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True).stdout
    return [
        int(pid)
        for pid, sid, stat in (line.split()[:3] for line in listing.splitlines())
        if int(sid) == session and not stat.startswith("Z")
    ]


ORPHAN_WAIT_S = 20  # the reaper's grace period and a margin; Ray's own agents took about a minute


def end_session(session: int) -> list[int]:
    """SIGKILL what is left of a session (so that a failing test leaks nothing); returns what was left."""
    left = session_processes(session)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def kill_driver(driver: subprocess.Popen) -> None:
    """SIGKILL `hpo sweep`; its embedded Ray (its session) must end by itself, soon."""
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while session_processes(driver.pid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    orphans = end_session(driver.pid)
    assert not orphans, f"Ray processes outlived the killed driver by {ORPHAN_WAIT_S} s: {orphans}"


def start_driver(tiny: Path, *args: str, output: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", *args],
        cwd=tiny,
        stdout=subprocess.PIPE if output else subprocess.DEVNULL,
        stderr=subprocess.PIPE if output else subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its embedded Ray shares the session, so the test can see exactly that
    )


def wait_for_interruptible_point(tiny: Path, driver: subprocess.Popen, ended_first: bool = True) -> Path:
    """Until one trial has ended (if `ended_first`) and the next reported its first rung."""
    deadline = time.monotonic() + DRIVER_WAIT_S
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the sweep ended before it could be interrupted"
        tables = list((tiny / "runs").glob("*/trials.parquet"))
        rows = read_rows(tables[0]) if tables else []
        ended = {r["trial_id"] for r in rows if r["status"] != "running"}
        running = [r for r in rows if r["status"] == "running" and r["step"] == FIRST_RUNG]
        if (ended or not ended_first) and running:
            return tables[0].parent
        time.sleep(POLL_S)
    raise AssertionError("the sweep never reached a point to interrupt")


def test_a_killed_driver_leaves_no_ray_process_and_a_changed_space_is_refused_on_resume(tiny):
    fault_sweep(tiny, trials=1, callbacks=["SlowSteps"])
    driver = start_driver(tiny, "sweep", "sweep.yaml", "--quiet")
    try:
        run_dir = wait_for_interruptible_point(tiny, driver, ended_first=False)
    finally:
        kill_driver(driver)
    # a changed search space is refused, one line per key, with nothing written
    space = yaml.safe_load((tiny / "space_one.yaml").read_text())
    space["parameters"]["learning_rate"]["high"] = 0.02
    (tiny / "space_one.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    listing = sorted((p, p.stat().st_mtime_ns) for p in run_dir.rglob("*"))
    refused = hpo("resume", str(run_dir), cwd=tiny, code=2)
    (line,) = refused.stderr.strip().splitlines()
    assert "space.parameters.learning_rate.high: the run has 0.01, the sweep file now gives 0.02" in line
    assert line.startswith(f"error: {run_dir / 'spec.yaml'}: ")
    assert sorted((p, p.stat().st_mtime_ns) for p in run_dir.rglob("*")) == listing


def assert_resumed(run_dir: Path, before: dict[str, list[dict]], stdout: str, trials: int) -> None:
    """`hpo resume` ran the budget with no trial lost or run twice: ended trials kept, the interrupted
    one went on from its first rung's checkpoint, and the study names the record's trials."""
    ended = {t: rows for t, rows in before.items() if rows[-1]["status"] in ("completed", "stopped")}
    (interrupted,) = [t for t in before if t not in ended]
    assert f"run directory: {run_dir}" in stdout and "best (validation): " in stdout
    assert f"continued from step {FIRST_RUNG}" in stdout and f"({trials}/{trials} done)" in stdout  # the view goes on
    after = by_trial(run_dir)
    assert len(after) == trials
    study = study_of(run_dir)
    assert all(t.state.is_finished() for t in study.trials) and len(study.trials) == trials
    assert {t.user_attrs["ray_trial_id"] for t in study.trials} == set(after)  # the study names the record's trials
    (continued,) = [t for t in study.trials if t.user_attrs["ray_trial_id"] == interrupted]
    assert len(continued.user_attrs["ray_trial_ids"]) == 2  # its first Ray trial, and the one that finished it
    assert all(rows[0]["status"] in ("completed", "stopped") for rows in after.values())
    for trial_id, rows in ended.items():
        assert after[trial_id] == rows  # ended trials were not run again
    resumed = after[interrupted]
    first_rung = {k: v for k, v in resumed[0].items() if k not in ("status", "stop_reason")}  # the trial's
    assert first_rung.items() <= before[interrupted][0].items()  # its first rung stands as recorded
    assert resumed[-1]["step"] == 8 and resumed[-1]["resumed_from_step"] == FIRST_RUNG
    assert (run_dir / "best" / "recipe.yaml").is_file()
    assert_checkpoints_pruned(run_dir, keep=1)


SIGNAL_WAIT_S = 120  # a stopped sweep's trials end and Ray shuts down in well under this


def stop_with(driver: subprocess.Popen, signum: int) -> tuple[int, str, str]:
    """Send `signum` to `hpo sweep` and wait for it; its exit code, stdout and stderr."""
    driver.send_signal(signum)
    try:
        out, err = driver.communicate(timeout=SIGNAL_WAIT_S)
    finally:
        end_session(driver.pid)
    return driver.returncode, out, err


def test_ctrl_c_stops_cleanly_exports_nothing_and_hpo_resume_finishes(tiny):
    """Ctrl-C exited 0 with the full outcome and an unflagged "best" of 1 trial in 6."""
    fault_sweep(tiny, trials=3, callbacks=["SlowSteps"])
    driver = start_driver(tiny, "sweep", "sweep.yaml", output=True)
    run_dir = wait_for_interruptible_point(tiny, driver)
    code, out, err = stop_with(driver, signal.SIGINT)
    assert code == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == f"interrupted: 1 of 3 trials ended; finish with `hpo resume {run_dir}`"
    assert "Traceback" not in err and "Tuner.restore" not in out + err and "best recipe:" not in out
    assert not (run_dir / "best").exists()
    assert json.loads((run_dir / "state.json").read_text())["state"] == "interrupted"
    states = [t.state for t in study_of(run_dir).trials]
    assert states[0].is_finished() and states[1] == optuna.trial.TrialState.RUNNING  # left for resume

    partial = hpo("export", str(run_dir), cwd=tiny)  # the best so far, flagged wherever it appears
    assert yaml.safe_load((run_dir / "best" / "recipe.yaml").read_text())["partial"] is True
    assert "warning: partial: " in partial.stderr and (run_dir / "best" / "trl_sft_config.yaml").read_text().startswith(
        "# PARTIAL"
    )
    summary = Path(hpo("report", str(run_dir), cwd=tiny).stdout.split("summary: ")[1].strip()).read_text()
    assert "## Partial" in summary and "has not finished" in summary

    # `hpo resume` once sat idle for 14 minutes when Ray's saved experiment listed no trial: it goes
    # by the sweep's own record now, so Ray's saved state may be missing altogether
    for state in (run_dir / "tune").glob("*state*"):
        state.unlink()
    before = by_trial(run_dir)
    done = hpo("resume", str(run_dir), cwd=tiny)
    assert "best recipe:" in done.stdout and json.loads((run_dir / "state.json").read_text())["state"] == "finished"
    assert "partial" not in yaml.safe_load((run_dir / "best" / "recipe.yaml").read_text())
    assert_resumed(run_dir, before, done.stdout, trials=3)


@pytest.mark.slow  # SIGTERM goes through the same handler as Ctrl-C (test_ctrl_c_stops_cleanly...)
def test_sigterm_stops_like_ctrl_c(tiny):
    """SIGTERM exited 134 with a native stack dump."""
    fault_sweep(tiny, trials=2, callbacks=["SlowSteps"])
    driver = start_driver(tiny, "sweep", "sweep.yaml", "--quiet", output=True)
    run_dir = wait_for_interruptible_point(tiny, driver, ended_first=False)
    code, out, err = stop_with(driver, signal.SIGTERM)
    assert code == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == f"interrupted: 0 of 2 trials ended; finish with `hpo resume {run_dir}`"
    assert "Traceback" not in err and "Fatal Python error" not in err and "Aborted" not in err
    assert json.loads((run_dir / "state.json").read_text())["signal"] == signal.SIGTERM


def test_ctrl_c_before_the_sweep_starts_writes_nothing(tiny):
    """Ctrl-C before the first rung exited 2 with "trials.parquet: not found"."""
    fault_sweep(tiny, trials=2, callbacks=[])
    driver = start_driver(tiny, "sweep", "sweep.yaml", "--quiet", output=True)
    assert driver.stdout.readline().startswith("measuring the base model")
    code, _, err = stop_with(driver, signal.SIGINT)
    assert code == 130, err[-3000:]
    assert err.strip().splitlines() == [
        "interrupted before the sweep started: nothing was written (run the same command again)"
    ]
    assert not (tiny / "runs").exists() or not any((tiny / "runs").iterdir())


def test_a_sweep_where_no_trial_passes_exits_1_with_the_counts(tiny):
    """Every trial over the limit, diverged or raising exited 0 (or 2) and exported a failing "best"."""
    fault_sweep(tiny, trials=3, callbacks=["FailEveryWay"], max_steps=FIRST_RUNG)
    document = yaml.safe_load((tiny / "sweep.yaml").read_text())
    document["objective"]["max_general_regression"] = 0.05
    (tiny / "sweep.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    done = hpo("sweep", "sweep.yaml", cwd=tiny, code=1)
    (run_dir,) = (tiny / "runs").iterdir()
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("no trial passed (3 trials): ") and line.endswith("; no best recipe written")
    reasons = line.split(": ", 1)[1].split("; ")[0].split(", ")
    assert sorted(reasons) == ["1 diverged", "1 error", "1 over the regression limit"]
    assert not (run_dir / "best").exists() and "best recipe:" not in done.stdout
    assert "trial 2 diverged (2/3 done)" in done.stdout
    (ended,) = [line for line in done.stdout.splitlines() if "trial 3 failed: " in line]  # with its reason
    assert ended.endswith("(3/3 done)") and "injected failure" in ended
    statuses = {rows[0]["status"] for rows in by_trial(run_dir).values()}
    assert statuses <= {"stopped", "completed", "diverged", "error"} and "diverged" in statuses
    again = hpo("export", str(run_dir), cwd=tiny, code=1)
    assert again.stderr.startswith("no trial passed")


def write_checkpoint(folder: Path, step: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"w" * 64)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "optimizer.pt").write_bytes(b"o" * 128)
    (folder / "rng_state.pth").write_bytes(b"r" * 16)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / "metrics.json").write_text(json.dumps({"step": step}))
    mark_complete(folder)
    return folder


def test_a_torn_checkpoint_is_never_resumed_from_or_exported(tmp_path):
    trial = tmp_path / "tune" / "run_trial_abc12345_1"
    older = write_checkpoint(trial / "checkpoint_000000", 4)
    newer = write_checkpoint(trial / "checkpoint_000001", 8)
    assert is_complete(newer) and newest_complete([older, newer]) == newer
    with (newer / "optimizer.pt").open("r+b") as weights:  # a copy cut short
        weights.truncate(50)
    assert not is_complete(newer)
    assert newest_complete([older, newer]) == older
    assert find_checkpoint(RunDir(tmp_path), "abc12345", 8) is None
    assert find_checkpoint(RunDir(tmp_path), "abc12345", 4) == older
    (older / "complete.json").unlink()  # written last: without it the folder was never finished
    assert newest_complete([older, newer]) is None and find_checkpoint(RunDir(tmp_path), "abc12345", 4) is None


def test_only_the_weights_leave_a_checkpoint(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "checkpoint_000000", 4)
    copy_weights(checkpoint, tmp_path / "adapter")
    names = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert names == ["adapter_config.json", "adapter_model.safetensors", "metrics.json"]


def kept_steps(tune_dir: Path) -> dict[str, list[int]]:
    kept: dict[str, list[int]] = {}
    for folder in sorted(tune_dir.glob("*/checkpoint_*")):
        kept.setdefault(folder.parent.name.split("_")[2], []).append(int(folder.name.split("_")[1]))
    return kept


def test_ended_trials_keep_checkpoints_only_when_best(tmp_path):
    tune_dir = tmp_path / "tune"
    table = TrialTable(tmp_path / "trials.parquet")
    scores = {"aaaa0001": {4: 0.1, 8: 0.3, 12: 0.2}, "bbbb0002": {4: 0.2, 8: 0.1}, "cccc0003": {4: 0.9}}
    for trial_id, steps in scores.items():
        for step, objective in steps.items():
            write_checkpoint(tune_dir / f"run_trial_{trial_id}_1" / f"checkpoint_{step:06d}", step)
            table.add_result(trial_id, {}, {"step": step, "objective": objective})
    table.finish("aaaa0001", "completed")
    table.finish("bbbb0002", "stopped")
    prune(tune_dir, table, keep=2)
    assert kept_steps(tune_dir) == {"cccc0003": [4]}  # still running, and it holds the top objective
    for step, objective in ((8, 0.5), (12, 0.95)):
        write_checkpoint(tune_dir / "run_trial_cccc0003_1" / f"checkpoint_{step:06d}", step)
        table.add_result("cccc0003", {}, {"step": step, "objective": objective})
    table.finish("cccc0003", "completed")
    prune(tune_dir, table, keep=2)
    assert kept_steps(tune_dir) == {"cccc0003": [4, 12]}  # the best trial's two best rungs


def test_halving_the_batch_keeps_the_effective_batch(tiny):
    recipe = load_sweep(tiny / "sweep.yaml").recipe
    sizes = []
    while recipe is not None:
        sizes.append((recipe.training.batch_size, recipe.training.grad_accum))
        recipe = halved_batch(recipe)
    assert sizes == [(8, 1), (4, 2), (2, 4), (1, 8)]


def test_a_new_attempt_keeps_the_last_batch_and_halves_it_once_per_memory_kill(tiny):
    """A worker lost after an out-of-memory retry went back to the full batch (the plan lived only in the
    lost worker); each time the OS ends a worker for memory the next attempt halves it."""
    recipe = load_sweep(tiny / "sweep.yaml").recipe
    plan = lambda r, retries, why: (r.training.batch_size, r.training.grad_accum, retries, why)  # noqa: E731
    assert plan(*start_plan(recipe, {}, 0, 1)) == (8, 1, 0, None)
    assert plan(*start_plan(recipe, {}, 1, 1)) == (4, 2, 1, None)  # the first attempt was ended for memory
    kept = {"batch_size": 4, "grad_accum": 2, "oom_retries": 1, "memory_kills": 0}
    assert plan(*start_plan(recipe, kept, 0, 1)) == (4, 2, 1, None)  # lost for another reason
    assert plan(*start_plan(recipe, {**kept, "memory_kills": 1}, 1, 1)) == (4, 2, 1, None)  # already halved
    assert plan(*start_plan(recipe, kept, 2, 1)) == (1, 8, 3, None)
    smallest = {"batch_size": 1, "grad_accum": 8, "oom_retries": 3, "memory_kills": 3}
    assert plan(*start_plan(recipe, smallest, 4, 1)) == (1, 8, 3, "out of host memory at batch size 1 (grad_accum 8)")


@pytest.mark.parametrize(
    ("checkpoints", "callbacks", "expected"),
    [
        ({"keep": 0}, [], "checkpoints.keep: must be >= 1, got 0"),
        ({"keep": 21}, [], "checkpoints.keep: must be <= 20, got 21"),
        ({"keep": "two"}, [], "checkpoints.keep: must be an integer, got 'two'"),
        ({"kept": 2}, [], "checkpoints.kept: unknown key 'kept' (did you mean 'keep'?)"),
        ({}, ["no_such_module:Callback"], "training.callbacks[0]: cannot import module 'no_such_module'"),
        ({}, ["fault_callbacks:recorded"], "training.callbacks[0]: module 'fault_callbacks' has no transformers"),
        ({}, ["fault_callbacks"], "training.callbacks[0]: must look like 'package.module:Class'"),
    ],
)
def test_checkpoints_and_callbacks_are_checked_at_load(tiny, checkpoints, callbacks, expected):
    shutil.copy(CALLBACKS, tiny / CALLBACKS.name)
    document = yaml.safe_load((tiny / "sweep.yaml").read_text())
    document["checkpoints"] = checkpoints
    document["training"]["callbacks"] = callbacks
    (tiny / "sweep.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(InputError) as caught:
        load_sweep(tiny / "sweep.yaml")
    (line,) = caught.value.problems
    assert line.startswith(f"{tiny / 'sweep.yaml'}: {expected}"), line
