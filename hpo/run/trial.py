"""The Ray side of one trial: runs the stage's trainer and adapts its `report` to `ray.tune.report`.

The trainer stays Ray-free; here each rung's metrics are scored by the composite
objective with the stage's domain metric, and the rung's checkpoint (a complete trainer
state) becomes a Ray checkpoint. A trial whose worker died goes on from its newest
complete checkpoint (`ray.tune.get_checkpoint`), not from step 0, and its later rungs
say `resumed_from_step`; a trial that `hpo resume` continues (hpo.run.continuation) goes on
from the newest complete checkpoint of the trial it continues. Running out of accelerator memory retries in the same trial
with half the micro-batch and twice the gradient accumulation (the same effective
batch), from the newest checkpoint; every rung records `batch_size`, `grad_accum` and
`oom_retries`. A trial ends early, as a failing final result that Ray never retries,
when training diverges, when an RFT guardrail trips (KL over its limit, a reward
blow-up: `guardrail`), when the reward cannot be computed (`failed`) or when memory
runs out at batch size 1 (`oom`); `violation` says why.

A trial whose worker the OS ended for memory (hpo.run.workers judges it on the driver) is
retried the same way, from its newest checkpoint with half the micro-batch, on a new
worker; the trial's worker file (hpo.run.workers) keeps the batch plan each attempt trained with
last, so a later attempt never goes back to a batch that ran out. Each rung also records the
worker's peak resident memory (`peak_resident_gb`).

A trial with `resources.workers` above 1 trains over that many processes (hpo.run.ranks), each
attempt in fresh ones; the same errors come back from them, so the retries above hold for
every rank together.

Ray Tune hands a finished trial's worker to the next trial only if the finished trial's
thread ends within `TUNE_FUNCTION_THREAD_TIMEOUT_S` (2 s); on busy cores its tear-down
takes longer, and Tune then failed the new trial without telling the searcher or the
callbacks: the trial was lost, and once every slot held one the sweep stalled.
`WaitForPreviousTrial` makes such a worker wait for the thread instead.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import json
from pathlib import Path
from typing import Any

from ray import tune

from hpo.config.sweep_file import Objective
from hpo.results.rundir import RunDir, continue_point
from hpo.run import ranks
from hpo.run.compat import trial_thread
from hpo.run.continuation import CONTINUES, trial_params
from hpo.run.rung_stop import rung_stop_reason
from hpo.run.workers import GB, ResidentWatch, memory_kills, read_note
from hpo.search.objective import FAILING_OBJECTIVE, score
from trainers.checkpoints import METRICS, is_complete, newest_complete
from trainers.recipe import Recipe
from trainers.shared import Diverged, Flag, OutOfMemory, ScoringError
from trainers.stages import STAGES, Stage, domain_metric

REUSE_WAIT_S = 600  # how long a reused worker waits for its previous trial's thread to end


def trainer_for(stage: Stage):
    """What a trial trains with: the stage (trainers.stage.Stage.train)."""
    return stage


def resume_point(config: dict[str, Any] | None = None, tune_dir: Path | None = None) -> Path | None:
    """The newest complete checkpoint Ray holds for this trial, or the newest complete one before it.

    Without one from Ray, the sweep's own record decides (`tune_dir` given): the newest complete
    checkpoint at a recorded rung of this trial, or of the trial it continues (`config[CONTINUES]`).
    Ray registers a rung's checkpoint only after the record has the rung, so a worker lost in
    between still goes on from it rather than from step 0.
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        if tune_dir is None:
            return None
        return continue_point(RunDir(tune_dir.parent), worker_trial_id(config))
    latest = Path(checkpoint.path)
    if not latest.is_dir():  # storage that is not a local or shared file system: fetch a copy
        latest = Path(checkpoint.to_directory())
    if is_complete(latest):
        return latest
    return newest_complete(p for p in latest.parent.glob("checkpoint_*") if p.name < latest.name)


def worker_trial_id(config: dict[str, Any] | None) -> str:
    """In a trial's worker: the id the trial is recorded under (hpo.run.continuation.recorded_id)."""
    return (config or {}).get(CONTINUES) or tune.get_context().get_trial_id()


def halved_batch(recipe: Recipe, workers: int = 1) -> Recipe | None:
    """The recipe with about half the micro-batch per process and the same effective batch; None at
    batch size 1."""
    batch, accum = recipe.training.batch_plan(workers)
    if batch <= 1:
        return None
    smaller = max(d for d in range(1, batch // 2 + 1) if batch % d == 0)
    training = dataclasses.replace(recipe.training, batch_size=smaller, grad_accum=accum * (batch // smaller))
    return dataclasses.replace(recipe, training=training)


def batch_metrics(recipe: Recipe, oom_retries: int, workers: int = 1) -> dict[str, float]:
    """The micro-batch and accumulation each process trains with, and the out-of-memory retries so far."""
    batch, accum = recipe.training.batch_plan(workers)
    return {"batch_size": batch, "grad_accum": accum, "oom_retries": oom_retries}


def train_attempt(stage: Stage, recipe: Recipe, reporter, resume_from: Path | None, workers: int) -> None:
    """One attempt at the trial: in this process, or over `workers` processes (hpo.run.ranks)."""
    if workers == 1:
        trainer_for(stage).train(recipe, reporter, resume_from=resume_from)
    else:
        ranks.train(recipe, reporter, workers, resume_from)


def free_memory() -> None:
    """Give a finished attempt's memory back: to the accelerator, and to the OS.

    Trial workers are reused (`reuse_actors`), and glibc keeps freed heap: without
    `malloc_trim` reused workers keep gigabytes each and a node runs out of memory
    (benchmarks/README.md has the measurement).
    """
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


class RungReporter:
    """Scores a trainer's rungs and hands them to Ray; remembers the last one for what follows."""

    def __init__(self, recipe: Recipe, baseline: dict[str, float], objective: Objective, resumed: dict | None) -> None:
        self.domain = domain_metric(recipe)
        self.baseline, self.objective = baseline, objective
        self.previous = resumed  # the last rung's metrics, for RFT's blow-up check
        self.last_step = int(resumed["step"]) if resumed else 0
        self.batch: dict[str, float] = {}
        self.watch: ResidentWatch | None = None  # the worker's resident memory, when the trial has a worker file
        self.memory_kills = 0  # times the OS ended a worker of this trial for memory (hpo.run.workers)

    def __call__(self, step: int, metrics: dict[str, float], checkpoint: Path | None) -> bool:
        scored = score(
            metrics,
            self.baseline,
            self.objective.general_weight,
            self.objective.max_general_regression,
            domain=self.domain,
            max_kl=self.objective.max_kl,
            general=self.objective.general,
        )
        stop = self.guardrail(metrics)
        ending = (
            {"objective": FAILING_OBJECTIVE, Flag.VIOLATION: stop, Flag.FINAL: 1.0, Flag.GUARDRAIL: 1.0} if stop else {}
        )
        result = {**metrics, **self.batch, **self.resident(), **scored, **ending}
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None)
        self.previous, self.last_step = metrics, step
        return bool(stop)

    def resident(self) -> dict[str, float]:
        return {"peak_resident_gb": self.watch.peak / GB} if self.watch else {}

    def set_batch(self, recipe: Recipe, oom_retries: int, workers: int) -> None:
        """The batch plan this attempt trains with, in every rung and in the worker file."""
        self.batch = batch_metrics(recipe, oom_retries, workers)
        if self.watch:
            self.watch.set_plan({**self.batch, "memory_kills": self.memory_kills})

    def guardrail(self, metrics: dict[str, float]) -> str:
        """Why the trial stops at this rung; the limits are None where its stage adds none (Stage.rung_limits)."""
        objective = self.objective
        return rung_stop_reason(metrics, self.previous, objective.max_kl, objective.min_length_ratio)

    def end(self, step: int, flag: str, violation: str) -> None:
        """A failing final result of its own, never overwriting a reported rung."""
        step = max(step, self.last_step + 1)
        ending = {"step": step, "objective": FAILING_OBJECTIVE, Flag.FINAL: 1.0, flag: 1.0, Flag.VIOLATION: violation}
        tune.report({**self.batch, **self.resident(), **ending})


class WaitForPreviousTrial:
    """Mixed into Ray Tune's function trainable for `run_trial` (its `__mixins__`): a reused worker whose
    previous trial's thread is still ending when Tune's own wait runs out waits for it, up to
    REUSE_WAIT_S, and then takes the next trial. A thread still running after that fails the trial
    through Tune's ordinary failure path: shown, recorded and told to the searcher."""

    def reset_config(self, new_config: dict) -> bool:
        if super().reset_config(new_config):  # type: ignore[misc]
            return True
        thread = trial_thread()
        if thread is not None:
            thread.join(REUSE_WAIT_S)
            if thread.is_alive():
                raise RuntimeError(f"the reused worker was still ending its previous trial after {REUSE_WAIT_S} s")
        return super().reset_config(new_config)  # type: ignore[misc]


def run_trial(
    config: dict[str, Any],
    recipe: Recipe,
    baseline: dict[str, float],
    objective: Objective,
    tune_dir: Path | None = None,
    workers: int = 1,
) -> None:
    """One trial in a (reused) worker: first give back what an earlier trial here left behind, whether
    it ended or was stopped (a stopped trial's objects live on in its exception until Ray handles it).
    `tune_dir` is where the checkpoints of a trial this one continues are, and the run directory's
    worker files beside it (hpo.run.workers)."""
    free_memory()
    try:
        train_trial(config, recipe, baseline, objective, tune_dir, workers)
    finally:
        free_memory()


run_trial.__mixins__ = (WaitForPreviousTrial,)  # type: ignore[attr-defined]


def start_plan(recipe: Recipe, previous: dict[str, Any], kills: int, workers: int) -> tuple[Recipe, int, str | None]:
    """(recipe, out-of-memory retries, why the trial cannot go on) for a new attempt: the batch plan the
    last attempt trained with (its worker file, `previous`), halved once for each time the OS ended a
    worker of this trial for memory since that plan was written."""
    oom_retries = 0
    if "batch_size" in previous:
        training = dataclasses.replace(
            recipe.training, batch_size=int(previous["batch_size"]), grad_accum=int(previous["grad_accum"])
        )
        recipe, oom_retries = dataclasses.replace(recipe, training=training), int(previous["oom_retries"])
    for _ in range(kills - int(previous.get("memory_kills", 0))):
        smaller = halved_batch(recipe, workers)
        if smaller is None:
            accum = recipe.training.batch_plan(workers)[1]
            return recipe, oom_retries, f"out of host memory at batch size 1 (grad_accum {accum})"
        recipe, oom_retries = smaller, oom_retries + 1
    return recipe, oom_retries, None


def train_trial(
    config: dict[str, Any],
    recipe: Recipe,
    baseline: dict[str, float],
    objective: Objective,
    tune_dir: Path | None = None,
    workers: int = 1,
) -> None:
    resume_from = resume_point(config, tune_dir)
    resumed = json.loads((resume_from / METRICS).read_text()) if resume_from else None
    note = RunDir(tune_dir.parent).worker_file(worker_trial_id(config)) if tune_dir else None
    kills = memory_kills(config)
    trial_recipe, oom_retries, cannot = start_plan(
        recipe.with_hyperparameters(trial_params(config)), read_note(note) if note else {}, kills, workers
    )
    reporter = RungReporter(recipe, baseline, objective, resumed)
    reporter.watch, reporter.memory_kills = (ResidentWatch(note, {}) if note else None), kills
    try:
        reporter.set_batch(trial_recipe, oom_retries, workers)
        if cannot:
            step = int(resumed["step"]) if resumed else 0
            reporter.end(step, Flag.OOM, f"{cannot}, step {step}")
        elif resumed and resumed[Flag.FINAL]:  # it ended before the sweep stopped; Ray had not heard of the end
            reporter(int(resumed["step"]), resumed, None)
        else:
            train_attempts(config, trial_recipe, oom_retries, reporter, resume_from, tune_dir, workers)
    finally:
        if reporter.watch:
            reporter.watch.stop()


def train_attempts(
    config: dict[str, Any],
    trial_recipe: Recipe,
    oom_retries: int,
    reporter: RungReporter,
    resume_from: Path | None,
    tune_dir: Path | None,
    workers: int,
) -> None:
    """Train, retrying in this worker with half the micro-batch while the accelerator runs out of memory."""
    stage = STAGES[trial_recipe.stage]
    while True:
        reporter.set_batch(trial_recipe, oom_retries, workers)
        try:
            train_attempt(stage, trial_recipe, reporter, resume_from, workers)
            return
        except OutOfMemory as err:
            smaller = halved_batch(trial_recipe, workers)
            if smaller is None:
                accum = trial_recipe.training.batch_plan(workers)[1]
                reporter.end(err.step, Flag.OOM, f"out of memory at batch size 1 (grad_accum {accum}), step {err.step}")
                return
            trial_recipe, oom_retries = smaller, oom_retries + 1
            resume_from = resume_point(config, tune_dir)  # the newest rung reported so far, if any
            free_memory()
        except Diverged as err:
            reporter.end(err.step, Flag.DIVERGED, str(err))
            return
        except ScoringError as err:
            reporter.end(err.step, Flag.FAILED, str(err))
            return
