"""Trials over several processes on real torch.distributed (gloo on CPUs), through the real CLI.

One `hpo sweep` of two identical two-process trials (DDP: accelerate runs FSDP on
accelerators only, so CPU processes replicate the model), with a reduction factor that
makes strict ASHA stop the first trial at its first rung and let the second, which ties,
go on. The second trial loses its rank 1 to a SIGKILL after its first rung and is
restarted from that rung's checkpoint with both ranks. Then the exported recipe is rerun
by one process, and by two under torchrun, and their losses are compared with the trial's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from hpo.config.errors import InputError
from hpo.config.sweep_file import load_sweep
from hpo.run.trial import batch_metrics, halved_batch
from trainers.recipe import Training, save_recipe
from trainers.stages import load_recipe

CALLBACKS = Path(__file__).parent / "rank_callbacks.py"
FIRST_RUNG, LAST_STEP = 4, 8
# Two processes of micro-batch 4 against one of 8, the same rows in the same order: the
# losses differ only by float summation order (measured: 1e-8 relative).
LOSS_TOLERANCE = 1e-4


def two_process_sweep(tiny: Path) -> Path:
    shutil.copy(CALLBACKS, tiny / CALLBACKS.name)
    space = {
        "stage": "sft",
        "method": "lora",
        "parameters": {
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.01, "default": 0.01},
            "lora_dropout": {"type": "float", "low": 0.0, "high": 0.0, "default": 0.0},
        },
    }
    (tiny / "space_one.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    document = yaml.safe_load((tiny / "sweep.yaml").read_text())
    document.pop("general")  # no lm-eval benchmarks and no held-out check: they would only slow this test
    document["data"].pop("domain_test")
    document.update(
        search_space="space_one.yaml",
        budget={"trials": 2, "concurrency": 1},
        # 1.2: too few trials for a rung's leader to go on alone, so the first trial stops at step 4
        scheduler={"rung_interval": FIRST_RUNG, "max_steps": LAST_STEP, "reduction_factor": 1.2},
        resources={"cpu": 2, "workers": 2},
        tracking={"wandb": "disabled"},
        checkpoints={"keep": 1},
    )
    document["training"].update(effective_batch=8, callbacks=["rank_callbacks:RankLog", "rank_callbacks:KillRankOnce"])
    (tiny / "sweep.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return tiny / "sweep.yaml"


def by_trial(run_dir: Path) -> dict[str, list[dict]]:
    trials: dict[str, list[dict]] = {}
    for row in pq.read_table(run_dir / "trials.parquet").to_pylist():
        trials.setdefault(row["trial_id"], []).append({k: v for k, v in row.items() if v is not None})
    return trials


def reported_steps(run_dir: Path, trial_id: str) -> list[int]:
    """Every result the trial reported to Ray, as Ray wrote them down."""
    (trial_dir,) = (run_dir / "tune").glob(f"*_{trial_id}_*")
    return [json.loads(line)["step"] for line in (trial_dir / "result.json").read_text().splitlines()]


def attempts(notes: list[dict]) -> list[list[dict]]:
    """The begin notes grouped by attempt: two ranks each, in the order they started."""
    begins = [n for n in notes if n["kind"] == "begin"]
    return [begins[i : i + 2] for i in range(0, len(begins), 2)]


def rerun(command: list[str], cwd: Path) -> dict[int, float]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rungs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["step"] for r in rungs] == [FIRST_RUNG, LAST_STEP]  # each rung printed once, by rank 0
    return {r["step"]: r["train_loss"] for r in rungs}


@pytest.mark.slow  # two minutes; the ranks' start, failure and shared batch are covered by the fast tests below
def test_a_two_process_trial_stops_restarts_and_matches_one_process(tiny):
    two_process_sweep(tiny)
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "sweep", "sweep.yaml", "--quiet"], cwd=tiny, text=True, capture_output=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tiny / "runs").iterdir()
    trials = by_trial(run_dir)
    stopped, finished = sorted(trials, key=lambda t: len(trials[t]))
    log = [json.loads(line) for line in (tiny / "ranks.jsonl").read_text().splitlines()]
    first, second, third = attempts(log)
    assert all(n["world"] == 2 for n in first + second + third) and len(log) == len(first + second + third) + sum(
        1 for n in log if n["kind"] == "step"
    )

    # ASHA stopped the first trial at its first rung; its ranks went no further and were ended
    (row,) = trials[stopped]
    assert row["step"] == FIRST_RUNG and row["status"] == "stopped" and row["stop_reason"].startswith("asha")
    first_pids = {n["pid"] for n in first}
    assert max(n["step"] for n in log if n["kind"] == "step" and n["pid"] in first_pids) == FIRST_RUNG
    assert not first_pids & set(second[0]["alive"] + second[1]["alive"])  # gone before the next trial began

    # rank 1 of the second trial was killed after its first rung: both ranks restarted from that rung
    killed = int((tiny / "killed.txt").read_text())
    assert killed in {n["pid"] for n in second if n["rank"] == 1}
    assert not {n["pid"] for n in second} & set(third[0]["alive"] + third[1]["alive"])  # no orphan of the attempt
    rows = trials[finished]
    assert [r["step"] for r in rows] == [FIRST_RUNG, LAST_STEP] and rows[-1]["status"] == "completed"
    assert rows[-1]["resumed_from_step"] == FIRST_RUNG
    assert (rows[-1]["batch_size"], rows[-1]["grad_accum"]) == (4, 1)  # per process: 8 rows a step over two
    for trial_id in trials:  # rank 0 alone reported: every rung once
        assert reported_steps(run_dir, trial_id) == [r["step"] for r in trials[trial_id]]

    # the same recipe in one process, and in two under torchrun: the same losses
    trial_losses = {r["step"]: r["train_loss"] for r in rows}
    assert trials[stopped][0]["train_loss"] == pytest.approx(trial_losses[FIRST_RUNG], rel=LOSS_TOLERANCE)
    exported, _ = load_recipe(run_dir / "best" / "recipe.yaml")
    assert exported.training.effective_batch == 8
    recipe = tiny / "whole.yaml"  # the exported recipe stops at its best rung; these go to the end
    save_recipe(
        recipe, dataclasses.replace(exported, training=dataclasses.replace(exported.training, stop_at_step=None))
    )
    one = rerun([sys.executable, "-m", "trainers", str(recipe), "--out", "one"], tiny)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = rerun([*torchrun, "-m", "trainers", str(recipe), "--out", "two"], tiny)
    for step, loss in trial_losses.items():
        assert one[step] == pytest.approx(loss, rel=LOSS_TOLERANCE)
        assert two[step] == pytest.approx(loss, rel=LOSS_TOLERANCE)
    assert json.loads((tiny / "two" / "metrics.json").read_text())["step"] == LAST_STEP


def test_the_effective_batch_is_shared_by_the_processes():
    training = Training(batch_size=4, effective_batch=32)
    assert training.batch_plan(1) == (4, 8)
    assert training.batch_plan(2) == (4, 4)
    assert training.batch_plan(8) == (4, 1)
    assert Training(batch_size=8, effective_batch=12).batch_plan(2) == (6, 1)
    assert Training(batch_size=4, grad_accum=3).batch_plan(2) == (4, 3)  # without it: as given, per process
    with pytest.raises(ValueError, match="must be divisible by the number of processes"):
        Training(effective_batch=10).batch_plan(4)


def test_out_of_memory_halves_every_process_micro_batch_and_keeps_the_effective_batch(tiny):
    recipe = load_sweep(tiny / "sweep.yaml").recipe
    recipe = recipe.with_hyperparameters({"effective_batch": 16})
    plans = []
    while recipe is not None:
        plans.append(tuple(batch_metrics(recipe, 0, workers=2).values())[:2])
        recipe = halved_batch(recipe, workers=2)
    assert plans == [(8, 1), (4, 2), (2, 4), (1, 8)]


def write_sweep(tiny: Path, **sections) -> Path:
    document = yaml.safe_load((tiny / "sweep.yaml").read_text())
    for name, values in sections.items():
        document[name] = {**document.get(name, {}), **values}
    (tiny / "sweep.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return tiny / "sweep.yaml"


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"resources": {"cpu": 4, "gpu": 2, "workers": 4}}, "resources.gpu: with workers: 4 each process takes one"),
        ({"resources": {"cpu": 1, "gpu": 4}}, "resources.gpu: one process trains on one GPU: give workers: 4"),
        ({"resources": {"cpu": 1, "workers": 2}}, "resources.cpu: must be >= resources.workers (2"),
        (
            {"resources": {"cpu": 2, "workers": 2}, "training": {"effective_batch": 9}},
            "training.effective_batch: must be divisible by resources.workers (2), got 9",
        ),
        ({"training": {"load_in_4bit": True}}, "training.load_in_4bit: 4-bit weights (bitsandbytes) need a GPU"),
        ({"training": {"distributed": "zero3"}}, "training.distributed: must be one of auto, ddp, fsdp"),
    ],
)
def test_processes_and_memory_savers_are_checked_at_load(tiny, sections, expected):
    with pytest.raises(InputError) as caught:
        load_sweep(write_sweep(tiny, **sections))
    (line,) = caught.value.problems
    assert line.startswith(f"{tiny / 'sweep.yaml'}: {expected}"), line


def test_one_process_may_take_a_share_of_a_cpu(tiny):
    """Many small trials at a time share CPUs, as Ray allows; only several processes need one each."""
    config = load_sweep(write_sweep(tiny, resources={"cpu": 0.25}))
    assert config.resources.cpu == 0.25 and config.resources.workers == 1


def test_a_space_tunes_the_memory_savers_and_the_batch(tiny):
    space = yaml.safe_load((tiny / "space.yaml").read_text())
    space["parameters"].update(
        effective_batch={"type": "choice", "values": [8, 16], "default": 8},
        packing={"type": "choice", "values": [False, True], "default": False},
        gradient_checkpointing={"type": "choice", "values": [False, True], "default": True},
    )
    (tiny / "space.yaml").write_text(yaml.safe_dump(space))
    config = load_sweep(tiny / "sweep.yaml")
    recipe = config.recipe.with_hyperparameters(config.space.defaults())
    assert (recipe.training.effective_batch, recipe.training.packing, recipe.training.gradient_checkpointing) == (
        8,
        False,
        True,
    )
    assert recipe.hyperparameters.learning_rate == space["parameters"]["learning_rate"]["default"]
    space["parameters"]["packing"]["values"] = [0, 1]
    space["parameters"]["load_in_4bit"] = {"type": "choice", "values": [False, True], "default": False}
    (tiny / "space.yaml").write_text(yaml.safe_dump(space))
    with pytest.raises(InputError) as caught:
        load_sweep(tiny / "sweep.yaml")
    assert any("parameters.packing.values: must hold true or false, got 0" in p for p in caught.value.problems)
    assert any("training.load_in_4bit: 4-bit weights (bitsandbytes) need a GPU" in p for p in caught.value.problems)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_rank_dies_with_the_process_that_started_it(tmp_path):
    """A rank whose trial process is SIGKILLed (no chance to end its ranks) is ended by the kernel."""
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import os, time; from hpo.run.ranks import die_with_parent; die_with_parent(os.getppid()); "
        "print(os.getpid(), flush=True); time.sleep(60)'], stdout=subprocess.PIPE, text=True)\n"
        "print(child.stdout.readline().strip(), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("name", ["llama8b_lora", "llama8b_full_fsdp"])
def test_the_big_node_examples_are_valid_sweep_files(name):
    config = load_sweep(Path(__file__).parent.parent / "examples" / f"{name}.yaml")
    assert config.recipe.training.packing and config.recipe.training.gradient_checkpointing
    if config.recipe.method == "full":
        assert (config.resources.workers, config.resources.gpu) == (8, 8)
        assert config.recipe.training.sharded("full") and config.recipe.training.batch_plan(8) == (2, 4)


def test_a_failing_rank_ends_its_peers_and_its_training_error_comes_back(tmp_path):
    from hpo.run.ranks import Rank, RanksFailed, end, outcome_file, raise_failure, relay
    from trainers.rungs import OutOfMemory

    waiting = Rank(1, subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
    failing = Rank(0, subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]))
    ours, _theirs = socket.socketpair()
    started = time.monotonic()
    failed = relay(ours, [failing, waiting], report=lambda *rung: False)
    end([failing, waiting])
    assert failed is failing and waiting.code == -signal.SIGTERM and time.monotonic() - started < 10
    with pytest.raises(RanksFailed, match="rank 0 of the trial ended with exit code 3"):
        raise_failure(tmp_path, failed)
    outcome_file(tmp_path, 1).write_text(json.dumps({"error": "oom", "step": 6, "batch_size": 4}))
    with pytest.raises(OutOfMemory) as caught:  # what a rank wrote down wins: the trial retries on half the batch
        raise_failure(tmp_path, failed)
    assert (caught.value.step, caught.value.batch_size) == (6, 4)


def test_gradient_checkpointing_recomputes_the_same_losses_and_packing_trains(tiny):
    """Recomputed activations are the same activations: the loss curve does not move. Packing trains
    on fewer, fuller sequences."""
    from trainers.sft import train

    recipe = load_sweep(tiny / "sweep.yaml").recipe
    short = dataclasses.replace(recipe.training, max_steps=2, rung_interval=2)
    recipe = dataclasses.replace(recipe, general=dataclasses.replace(recipe.general, benchmarks=()), training=short)

    def losses(**training) -> tuple[float, float]:
        rungs: list[dict] = []
        trained = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, **training))
        train(trained, lambda step, metrics, checkpoint: rungs.append(metrics))
        return rungs[-1]["train_loss"], rungs[-1]["tokens_seen"]

    plain = losses()
    assert losses(gradient_checkpointing=True) == pytest.approx(plain, rel=1e-5)
    packed_loss, packed_tokens = losses(packing=True)
    assert packed_tokens > plain[1]  # each step's rows hold several examples each
    assert 0 < packed_loss < 10
