"""Training throughput inside sweep trials vs a standalone TRL run of the same recipe.

    python -m benchmarks.trial_throughput [--sweep demo/supersense3.yaml] [--steps 20] [--trials 3] [--repeats 2]

Runs a real sweep through the engine (embedded Ray, every CPU given to one trial at a
time) whose `--trials` trials all train the sweep's first recipe (the published
defaults), so the first trial starts a new worker and the next ones reuse it, as a
sweep's trials do; and the same recipe with TRL's SFTTrainer alone (no engine, no
probes, a new Python process each time, as a user's own run would start). Sweeps and
standalone runs alternate, `--repeats` of each, standalone, sweep, sweep, standalone,
..., so that a drift in the machine's speed (runs of the same recipe varied by up to
30% here) weighs on both alike. Then it reports, from the means over trials:

- tokens/s in the trials vs standalone (goal: ratio >= 0.95), also for first trials alone,
- per-trial overhead = (trial wall time - training - probes) / trial wall time (goal <= 5%),
  for all trials, for first trials (new worker: imports, model load) and for the rest,
- probe cost as a share of trial wall time.

Trial wall time runs from the driver starting the trial to its last rung reaching the
driver (hpo.run.timing), so it includes the worker's start, model load and dataset
preparation. While a sweep runs, every process's CPU time is read once a second and
summed by role (the trials' worker, the driver, Ray's own processes, W&B), to show what
shares the cores with training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import ray
import torch
from datasets import Dataset
from transformers import PrinterCallback, set_seed
from trl import SFTTrainer

from hpo.config.sweep_file import AshaSettings, Budget, Resources, SweepConfig, load_sweep
from hpo.run.baseline import measure_baseline
from hpo.run.sweep import prepare, run_sweep, trial_recipe
from hpo.run.timing import trial_times
from hpo.search.space import Parameter, SearchSpace
from trainers.models import load_base
from trainers.recipe import Recipe
from trainers.rungs import lora_config
from trainers.sft import trainer_config, training_rows

RATIO_GOAL = 0.95
OVERHEAD_GOAL = 0.05


def fixed_space(space: SearchSpace) -> SearchSpace:
    """The space with every parameter held at its default: each trial trains the same recipe."""
    fixed = tuple(Parameter(p.name, "choice", p.default, values=(p.default,)) for p in space.parameters)
    return dataclasses.replace(space, parameters=fixed)


def benchmark_config(config: SweepConfig, steps: int, trials: int, cpus: int, output_dir: str) -> SweepConfig:
    """`trials` trials of the defaults, one at a time on all CPUs, two rungs, results in a scratch folder."""
    recipe = config.recipe.with_hyperparameters(config.space.defaults())
    training = dataclasses.replace(recipe.training, max_steps=steps, rung_interval=steps // 2)
    return dataclasses.replace(
        config,
        name=f"{config.name}-throughput",
        recipe=dataclasses.replace(recipe, training=training),
        space=fixed_space(config.space),
        budget=Budget(trials=trials, concurrency=1),
        resources=Resources(cpu=cpus, gpu=0),
        scheduler=AshaSettings(
            rung_interval=steps // 2, max_steps=steps, reduction_factor=config.scheduler.reduction_factor
        ),
        output_dir=output_dir,
    )


def role(process: psutil.Process) -> str:
    """Who a process works for: the trial's worker, this driver, Ray itself, W&B, or anything else."""
    if process.pid == os.getpid():
        return "driver"
    try:
        command = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return "other"
    if "ImplicitFunc" in command or "ray::train" in command:
        return "trial worker"
    if "wandb" in command:
        return "wandb"
    if "ray" in command:
        return "ray"
    return "other"


class CpuLedger:
    """CPU seconds every process on the machine used while the ledger ran, summed by `role`.

    Polled once a second: a process's last reading counts, so one that ends between polls
    loses under a second of its time. A Ray worker is an idle one until it takes the trial,
    and the trial's from then on; a process classed as Ray's or other is classed again at
    every poll (a new one may not show its final command line yet); the rest keep theirs.
    The polling itself runs in the driver and counts there (about 4 ms of CPU per poll).
    """

    def __init__(self, period_s: float = 1.0) -> None:
        self.period_s = period_s
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def read(self, initial: bool = False) -> None:
        for process in psutil.process_iter():
            try:
                times = process.cpu_times()
                name = self.last.get(process.pid, ("ray", 0.0))[0]
                if name in ("ray", "other"):  # an idle Ray worker may take the trial; a process
                    name = role(process)  # just started may not show its final command line yet
            except psutil.Error:
                continue
            used = times.user + times.system
            self.last[process.pid] = (name, used)
            self.first.setdefault(process.pid, used if initial else 0.0)

    def poll(self) -> None:
        while not self.stopping.wait(self.period_s):
            self.read()

    def __enter__(self) -> CpuLedger:
        self.read(initial=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()
        self.read()

    def by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (name, used) in self.last.items():
            totals[name] = totals.get(name, 0.0) + used - self.first[pid]
        return dict(sorted(totals.items(), key=lambda item: -item[1]))


def sweep_figures(config: SweepConfig, baseline: dict) -> list[dict]:
    """Run one sweep; the figures of each of its trials, in start order (the first one started the worker)."""
    run_dir, baseline = prepare(config, baseline)
    try:
        with CpuLedger() as ledger:
            run_sweep(config, run_dir, baseline)
    finally:
        ray.shutdown()  # a fresh embedded Ray per sweep, and none under a standalone run
    times = trial_times(pq.read_table(run_dir / "trials.parquet").to_pylist())
    cpu = {name: seconds / len(times) for name, seconds in ledger.by_role().items()}
    return [
        {
            "first_in_worker": index == 0,
            "tokens": t.tokens,
            "train_seconds": t.train,
            "probe_seconds": t.probes,
            "wall_seconds": t.wall,
            "tokens_per_second": t.tokens / t.train,
            "overhead_share": t.overhead_share,
            "probe_share": t.probes / t.wall,
            "cpu_seconds_by_role": cpu,  # the sweep's, per trial
        }
        for index, t in enumerate(times)
    ]


def standalone_figures(recipe: Recipe, threads: int) -> dict:
    """The same recipe with TRL alone: no engine, no rung probes."""
    torch.set_num_threads(threads)
    set_seed(recipe.seed)
    model, tokenizer = load_base(recipe.model)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = SFTTrainer(
            model=model,
            args=trainer_config(recipe, Path(scratch)),
            train_dataset=Dataset.from_list(training_rows(recipe)),
            processing_class=tokenizer,
            peft_config=lora_config(recipe),
        )
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    tokens = float(trainer.state.num_input_tokens_seen)
    return {"tokens": tokens, "train_seconds": seconds, "tokens_per_second": tokens / seconds}


def fresh_standalone_figures(recipe: Recipe, threads: int) -> dict:
    """`standalone_figures` in a new Python process, as a user's own TRL run would start: the trial's
    worker is a new process too, so neither side trains on kernels and caches warmed by an earlier run."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(standalone_figures, recipe, threads).result()


def mean(runs: list[dict], key: str) -> float:
    return sum(run[key] for run in runs) / len(runs)


def summarize(trials: list[dict], standalones: list[dict]) -> dict:
    roles: dict[str, float] = {}
    for trial in trials:
        for name, seconds in trial["cpu_seconds_by_role"].items():
            roles[name] = roles.get(name, 0.0) + seconds / len(trials)
    first = [trial for trial in trials if trial["first_in_worker"]]
    reused = [trial for trial in trials if not trial["first_in_worker"]]
    standalone_speed = mean(standalones, "tokens_per_second")
    return {
        "throughput_ratio": mean(trials, "tokens_per_second") / standalone_speed,
        "throughput_ratio_first_trials": mean(first, "tokens_per_second") / standalone_speed,
        "throughput_ratio_goal": RATIO_GOAL,
        "overhead_share": mean(trials, "overhead_share"),
        "overhead_share_first_trials": mean(first, "overhead_share"),
        "overhead_share_reused_workers": mean(reused, "overhead_share") if reused else None,
        "overhead_goal": OVERHEAD_GOAL,
        "probe_share": mean(trials, "probe_share"),
        "wall_seconds": mean(trials, "wall_seconds"),
        "probe_seconds": mean(trials, "probe_seconds"),
        "cpu_seconds_by_role": dict(sorted(roles.items(), key=lambda item: -item[1])),
    }


def run_order(repeats: int) -> list[str]:
    """standalone, sweep, sweep, standalone, ...: a linear drift in speed cancels out of the means."""
    pairs = [("standalone", "sweep") if i % 2 == 0 else ("sweep", "standalone") for i in range(repeats)]
    return [kind for pair in pairs for kind in pair]


def markdown(result: dict) -> str:
    summary = result["summary"]
    runs = [("sweep trial, new worker" if run["first_in_worker"] else "sweep trial", run) for run in result["trials"]]
    runs += [("standalone TRL", run) for run in result["standalones"]]
    reused = summary["overhead_share_reused_workers"]
    return "\n".join(
        [
            f"# Trial throughput: {result['model']}, {result['steps']} steps, {result['cpus']} CPUs, "
            f"{result['repeats']} sweeps of {result['trials_per_sweep']} trials and {result['repeats']} standalone "
            f"runs (order: {', '.join(result['order'])})",
            "",
            "| run | tokens | training s | tokens/s | wall s | overhead |",
            "|---|---|---|---|---|---|",
            *(
                f"| {name} | {run['tokens']:.0f} | {run['train_seconds']:.1f} | {run['tokens_per_second']:.1f} | "
                + (f"{run['wall_seconds']:.1f} | {run['overhead_share']:.1%} |" if "wall_seconds" in run else "| |")
                for name, run in runs
            ),
            "",
            f"- throughput ratio (mean trial / mean standalone tokens/s): **{summary['throughput_ratio']:.3f}** "
            f"(goal >= {RATIO_GOAL}); first trials alone {summary['throughput_ratio_first_trials']:.3f}",
            f"- per-trial overhead: **{summary['overhead_share']:.1%}** of {summary['wall_seconds']:.1f} s trial wall "
            f"time (goal <= {OVERHEAD_GOAL:.0%}); first trial of a worker "
            f"{summary['overhead_share_first_trials']:.1%}"
            + (f", trials on a reused worker {reused:.1%}" if reused is not None else ""),
            f"- probes: {summary['probe_seconds']:.1f} s = **{summary['probe_share']:.1%}** of trial wall time",
            "",
            f"CPU seconds used per sweep trial ({result['cpus']} CPUs), by process role (mean over the sweeps):",
            "",
            "| role | CPU s |",
            "|---|---|",
            *(f"| {name} | {seconds:.1f} |" for name, seconds in summary["cpu_seconds_by_role"].items()),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=Path("demo/supersense3.yaml"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trials", type=int, default=3, help="trials per sweep, one after another on one worker")
    parser.add_argument("--repeats", type=int, default=2, help="sweeps and standalone runs, interleaved")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/trial_throughput"))
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    order = run_order(args.repeats)
    trials: list[dict] = []
    standalones: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        config = benchmark_config(load_sweep(args.sweep), args.steps, args.trials, cpus, scratch)
        recipe = trial_recipe(config)  # threads = the trial's CPUs, for both kinds of run
        baseline = measure_baseline(recipe)  # once: every trial run scores against it
        for kind in order:
            if kind == "sweep":
                trials += sweep_figures(config, baseline)
            else:
                standalones.append(fresh_standalone_figures(recipe, cpus))
    result = {
        "model": config.recipe.model,
        "steps": args.steps,
        "cpus": cpus,
        "repeats": args.repeats,
        "trials_per_sweep": args.trials,
        "order": order,
        "trials": trials,
        "standalones": standalones,
        "summary": summarize(trials, standalones),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    (args.out / "result.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
