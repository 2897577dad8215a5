"""Engine overhead: what the engine costs around each trial, and what the searcher costs per trial.

    python -m benchmarks.overhead --out benchmarks/results/overhead

1. Per-trial engine cost in real Ray Tune. Trivial function trainables that only sleep
   (1 s and 10 s per trial, split over 4 reports) run one at a time through the engine's
   own pieces: TPESearcher (journal file on disk) + the engine's ASHA, with
   `reuse_actors=True` as `hpo sweep` runs them. The trainable's own time is the sleep it
   finished up to its last report that reached the driver. Tune's fixed cost (from
   `Tuner.fit()` to the first trial's start, and from the last report to the return) is
   reported on its own; the rest of the wall time that is not sleep, divided by the
   trials, is the per-trial overhead: scheduling, actor reuse, result handling, the
   searcher, the journal, checkpoint bookkeeping, and any sleep cut short when ASHA stops
   a trial. Its share is taken of the nominal trial length (1 s, 10 s). Sleeping is a fair
   stand-in here: it occupies the trial as training would, and the quantity measured is
   the engine's cost around it, not the trial's work.
2. Searcher cost at 100 and 1,000 trials: a study filled with that many finished trials
   (intermediate values at ASHA's rungs, as a sweep leaves them), then the time of
   `suggest` (ask) and of `on_trial_complete` (tell) for further trials, median over
   repeats, with the journal on disk, for the rung seam (TPESearcher) and Optuna's own
   wiring (PrunedTPESearcher, benchmarks/search/peers.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import yaml

from benchmarks.search.peers import SEAMS
from hpo.search.scheduler import METRIC, STEP, asha_rungs, make_asha
from hpo.search.searcher import TPESearcher
from hpo.search.space import Parameter, SearchSpace

REPORTS = 4  # per trial: rung interval 1 of max 4 steps, ASHA rungs at steps 1, 2, 4
REDUCTION_FACTOR = 2
GOAL_SHORT_S = 0.3  # per trial, with 1-s trials
GOAL_LONG_SHARE = 0.03  # of the trial's time, with 10-s trials
GOAL_ASK_TELL_MS = 50.0  # at 1,000 trials, with none or CONCURRENT running
CONCURRENT = 64  # trials at a time in the sweep-driver measurement and pending in the searcher's
SPACE = SearchSpace(
    "overhead",
    "benchmark",
    "overhead",
    (
        Parameter("x", "float", 0.5, 0.0, 1.0),
        Parameter("y", "float", 1e-3, 1e-5, 1e-1, log=True),
        Parameter("z", "int", 2, 1, 8),
    ),
)


def sleeping_trainable(config: dict, seconds: float) -> None:
    """Sleeps its share of `seconds` between reports; the objective rewards x near 0.3 (or, in a
    sweep's space, a learning rate near 1e-2)."""
    from ray import tune

    seconds = seconds / REPORTS
    slept = 0.0
    started_at = time.time()
    for step in range(1, REPORTS + 1):
        started = time.perf_counter()
        time.sleep(seconds)
        slept += time.perf_counter() - started
        objective = -((config["x"] - 0.3) ** 2 if "x" in config else (math.log10(config["learning_rate"]) + 2) ** 2)
        metrics = {"slept_s": slept, "started_at": started_at, "reported_at": time.time(), "worker_pid": os.getpid()}
        tune.report({METRIC: objective + 0.01 * step, STEP: step, "final": float(step == REPORTS), **metrics})


def measure_trials(seconds: float, trials: int, workdir: Path) -> dict:
    from ray import tune

    searcher = TPESearcher(
        SPACE, workdir / "study.journal", "overhead", seed=0, startup_trials=4, rungs=asha_rungs(1, REPORTS, 2)
    )
    scheduler = make_asha(REPORTS, 1, REDUCTION_FACTOR)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(sleeping_trainable, seconds=seconds), {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=trials, max_concurrent_trials=1, reuse_actors=True
        ),
        run_config=tune.RunConfig(name=f"sleep-{seconds:g}s", storage_path=str(workdir), verbose=0),
    )
    started = time.time()
    results = tuner.fit()
    ended = time.time()
    metrics = [result.metrics for result in results]
    fixed = (min(m["started_at"] for m in metrics) - started) + (ended - max(m["reported_at"] for m in metrics))
    slept = sum(m["slept_s"] for m in metrics)
    overhead = (ended - started - fixed - slept) / len(metrics)
    return {
        "trial_seconds": seconds,
        "trials": len(metrics),
        "stopped_early": sum(1 for m in metrics if not m["final"]),
        "wall_s": ended - started,
        "fixed_s": fixed,
        "trainable_s": slept,
        "overhead_per_trial_s": overhead,
        "overhead_share": overhead / seconds,
    }


def write_sweep(folder: Path, trials: int, concurrency: int) -> Path:
    """A sweep file for the sweep driver: the tiny example's data and space, `concurrency` trials at
    a time sharing this machine's CPUs, ASHA over the sleeping trainable's reports, W&B off."""
    from hpo import tiny

    domain = tiny.domain_rows(0, 40)
    general = tiny.general_rows(1, 20)
    data = {
        "domain_train": domain[:20],
        "domain_eval": domain[20:30],
        "domain_test": domain[30:],
        "general_mix": general[:10],
        "instruction_probe": general[10:],
        "general_probe": [{"text": s} for s in tiny.sentences(3, 6)],
    }
    document = tiny.sweep_document(trials)
    del document["general"]  # its multiple-choice benchmark needs a task file, and no trial here runs it
    for key, rows in data.items():
        tiny.write_jsonl(folder / "data" / f"{key}.jsonl", rows)
    (folder / "space.yaml").write_text(yaml.safe_dump(tiny.TINY_SPACE, sort_keys=False))
    document.update(
        model="HuggingFaceTB/SmolLM2-135M-Instruct",  # never loaded: the trainable only sleeps
        budget={"trials": trials, "concurrency": concurrency},
        resources={"cpu": (os.cpu_count() or 1) / concurrency},
        scheduler={"rung_interval": 1, "max_steps": REPORTS, "reduction_factor": REDUCTION_FACTOR},
        tracking={"wandb": "disabled"},
    )
    sweep = folder / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(document, sort_keys=False))
    return sweep


def measure_sweep(seconds: float, trials: int, concurrency: int, workdir: Path) -> dict:
    """Sleeping trials through the sweep driver's own Tuner (hpo.run.sweep: searcher, scheduler, the
    trials.parquet record, checkpoint retention), `concurrency` at a time.

    Per-trial overhead here is what a worker spends between one trial's last report and the next
    trial's start on it, plus the trial's own time that is not sleep, averaged over the trials
    after each worker's first: with many trials at a time, Tune's start-up (one worker process per
    slot) and the end, where slots empty one by one, are not per-trial costs.
    """
    from ray import tune

    from hpo.config.sweep_file import load_sweep
    from hpo.run.interrupt import StopSignals
    from hpo.run.sweep import make_tuner, prepare, sweep_parts

    folder = workdir / f"sweep-{seconds:g}s"
    folder.mkdir()
    config = load_sweep(write_sweep(folder, trials, concurrency))
    run_dir, baseline = prepare(config, baseline={"metrics": {}}, run_dir=folder / "run")
    parts = sweep_parts(config, run_dir, baseline, live=None)
    sleeping = tune.with_parameters(sleeping_trainable, seconds=seconds)
    parts = dataclasses.replace(parts, trainable=tune.with_resources(sleeping, {"cpu": config.resources.cpu}))
    tuner = make_tuner(config, run_dir, parts, config.budget.trials, StopSignals())
    started = time.time()
    results = tuner.fit()
    wall = time.time() - started
    metrics = sorted((result.metrics for result in results), key=lambda m: m["started_at"])
    gaps = between_trials(metrics)
    inside = [m["reported_at"] - m["started_at"] - m["slept_s"] for m in metrics]
    overhead = (sum(gaps) + sum(inside)) / len(metrics) if gaps else math.nan
    return {
        "trial_seconds": seconds,
        "concurrency": concurrency,
        "trials": len(metrics),
        "stopped_early": sum(1 for m in metrics if not m["final"]),
        "workers": len({m["worker_pid"] for m in metrics}),
        "wall_s": wall,
        "trainable_s": sum(m["slept_s"] for m in metrics),
        "overhead_per_trial_s": overhead,
        "overhead_share": overhead / seconds,
        "recorded_rows": len(parts.table.rows),
        "max_running": max_running(metrics),
    }


def max_running(metrics: list[dict]) -> int:
    """The most trials that were between their start and their last report at once."""
    events = sorted([(m["started_at"], 1) for m in metrics] + [(m["reported_at"], -1) for m in metrics])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def between_trials(metrics: list[dict]) -> list[float]:
    """Per trial that was not its worker's first: the time from the worker's previous trial's last
    report to this trial's start (`metrics` in order of start)."""
    last: dict[int, float] = {}
    gaps = []
    for m in metrics:
        if m["worker_pid"] in last:
            gaps.append(m["started_at"] - last[m["worker_pid"]])
        last[m["worker_pid"]] = m["reported_at"]
    return gaps


def fill_study(searcher: TPESearcher, trials: int, rng: np.random.Generator) -> None:
    """`trials` finished trials shaped like an ASHA sweep: most stopped at the first rung."""
    rungs = searcher.rungs
    distributions = SPACE.distributions()
    records = []
    for _ in range(trials):
        params = {
            "x": float(rng.random()),
            "y": float(np.exp(rng.uniform(np.log(1e-5), np.log(1e-1)))),
            "z": int(rng.integers(1, 9)),
        }
        depth = min(int(rng.geometric(1 - 1 / REDUCTION_FACTOR)), len(rungs))
        values = {step: -((params["x"] - 0.3) ** 2) + 0.01 * step + 0.01 * rng.normal() for step in rungs[:depth]}
        final = depth == len(rungs)
        records.append(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE if final else optuna.trial.TrialState.PRUNED,
                value=values[rungs[-1]] if final else None,
                params=params,
                distributions=distributions,
                intermediate_values=values,
            )
        )
    searcher.study.add_trials(records)


def measure_ask_tell(trials: int, seam: str, repeats: int, workdir: Path, pending: int = 0) -> dict:
    """Ask, report and tell on a study holding `trials` finished trials and `pending` suggested ones
    still running (nothing reported yet, so all of them enter the sampler's model)."""
    rng = np.random.default_rng(trials)
    searcher = SEAMS[seam](
        SPACE,
        workdir / f"ask-tell-{seam}-{trials}-{pending}.journal",
        "ask-tell",
        seed=0,
        startup_trials=4,
        rungs=asha_rungs(1, REPORTS, REDUCTION_FACTOR),
    )
    fill_study(searcher, trials, rng)
    for index in range(pending):
        searcher.suggest(f"pending-{index}")
    asks, reports, tells = [], [], []
    for index in range(repeats):
        trial_id = f"probe-{index}"
        started = time.perf_counter()
        config = searcher.suggest(trial_id)
        asks.append(time.perf_counter() - started)
        value = -((config["x"] - 0.3) ** 2)
        started = time.perf_counter()
        searcher.on_trial_result(trial_id, {METRIC: value, STEP: 1})
        reports.append(time.perf_counter() - started)
        started = time.perf_counter()
        searcher.on_trial_complete(trial_id, {METRIC: value, STEP: 1, "final": 0.0})
        tells.append(time.perf_counter() - started)
    return {
        "seam": seam,
        "trials": trials,
        "pending": pending,
        "ask_ms": 1000 * statistics.median(asks),
        "ask_max_ms": 1000 * max(asks),
        "report_ms": 1000 * statistics.median(reports),
        "tell_ms": 1000 * statistics.median(tells),
        "ask_tell_ms": 1000 * (statistics.median(asks) + statistics.median(tells)),
    }


def goal_text(row: dict) -> str:
    if row["trial_seconds"] < 5:
        return f"<= {GOAL_SHORT_S} s: {'met' if row['overhead_per_trial_s'] <= GOAL_SHORT_S else 'NOT met'}"
    return f"<= {GOAL_LONG_SHARE:.0%}: {'met' if row['overhead_share'] <= GOAL_LONG_SHARE else 'NOT met'}"


def sweep_lines(sweep_rows: list[dict]) -> list[str]:
    lines = [
        "",
        "The sweep driver (hpo.run.sweep's Tuner: searcher, scheduler, trials.parquet record, checkpoint retention), "
        "sleeping trainables, many trials at a time on this machine's CPUs. Per-trial overhead = a worker's time "
        "from one trial's last report to its next trial's start, plus each trial's time that is not sleep, "
        "over the trials after each worker's first. Most running: the most trials between start and last report "
        "at once.",
        "",
        "| trial length | trials at a time | trials | stopped early | most running | workers | wall s "
        "| overhead / trial | share | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sweep_rows:
        lines.append(
            f"| {row['trial_seconds']:g} s | {row['concurrency']} | {row['trials']} | {row['stopped_early']} | "
            f"{row['max_running']} | {row['workers']} | {row['wall_s']:.1f} | {row['overhead_per_trial_s']:.3f} s | "
            f"{row['overhead_share']:.1%} | {goal_text(row)} |"
        )
    return lines


def markdown(trial_rows: list[dict], ask_rows: list[dict], sweep_rows: list[dict] = ()) -> str:
    lines = ["# Engine overhead"]
    if trial_rows:  # absent with --searcher-only
        lines += [
            "",
            "Real Ray Tune, one trial at a time, TPESearcher (journal on disk) + ASHA, sleeping trainables "
            f"({REPORTS} reports per trial). Per-trial overhead = (Tuner.fit wall time - Tune's fixed start-up and "
            "shutdown - time the trainables slept) / trials; it includes any sleep cut short when ASHA stops a "
            "trial. Share = per-trial overhead / nominal trial length.",
            "",
            "| trial length | trials | stopped early | wall s | fixed s | slept s | overhead / trial | share | goal |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    for row in trial_rows:
        lines.append(
            f"| {row['trial_seconds']:g} s | {row['trials']} | {row['stopped_early']} | {row['wall_s']:.1f} | "
            f"{row['fixed_s']:.1f} | {row['trainable_s']:.1f} | {row['overhead_per_trial_s']:.3f} s | "
            f"{row['overhead_share']:.1%} | {goal_text(row)} |"
        )
    if sweep_rows:
        lines += sweep_lines(sweep_rows)
    lines += [
        "",
        "Searcher cost with the study already holding N trials (median of repeats; journal on disk):",
        "",
        "| seam | trials in study | running | ask ms | ask max ms | report ms | tell ms | ask + tell ms | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ask_rows:
        goal = ""
        if row["trials"] >= 1000:
            goal = f"<= {GOAL_ASK_TELL_MS:g} ms: {'met' if row['ask_tell_ms'] <= GOAL_ASK_TELL_MS else 'NOT met'}"
        lines.append(
            f"| {row['seam']} | {row['trials']} | {row['pending']} | {row['ask_ms']:.1f} | {row['ask_max_ms']:.1f} | "
            f"{row['report_ms']:.1f} | {row['tell_ms']:.1f} | {row['ask_tell_ms']:.1f} | {goal} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/overhead"))
    parser.add_argument("--short-trials", type=int, default=30, help="1-s trials to run")
    parser.add_argument("--long-trials", type=int, default=10, help="10-s trials to run")
    parser.add_argument("--repeats", type=int, default=20, help="ask/tell repetitions per study size")
    parser.add_argument("--sweep-trials", type=int, default=128, help="trials per length through the sweep driver")
    parser.add_argument("--concurrency", type=int, default=CONCURRENT, help="trials at a time through the sweep driver")
    parser.add_argument(
        "--searcher-only", action="store_true", help="only the searcher's ask + tell (no Ray, about a minute)"
    )
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    scratch_root = args.out / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root) as scratch:
        workdir = Path(scratch).resolve()  # Ray Tune takes an absolute storage path or a URI
        sizes = ((100, 0), (1000, 0), (1000, CONCURRENT))
        ask_rows = [measure_ask_tell(n, seam, args.repeats, workdir, pending) for n, pending in sizes for seam in SEAMS]
        if args.searcher_only:
            trial_rows, sweep_rows = [], []
        else:
            trial_rows, sweep_rows = measure_engine(args, workdir)
    scratch_root.rmdir()
    table = markdown(trial_rows, ask_rows, sweep_rows)
    (args.out / "results.md").write_text(table)
    document = {"trials": trial_rows, "ask_tell": ask_rows, "sweep": sweep_rows}
    (args.out / "results.json").write_text(json.dumps(document, indent=1) + "\n")
    print(table)
    return 0


def measure_engine(args: argparse.Namespace, workdir: Path) -> tuple[list[dict], list[dict]]:
    """The per-trial rows (one trial at a time) and the sweep-driver rows, in one local Ray."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        trial_rows = [
            measure_trials(1.0, args.short_trials, workdir),
            measure_trials(10.0, args.long_trials, workdir),
        ]
        sweep_rows = [measure_sweep(seconds, args.sweep_trials, args.concurrency, workdir) for seconds in (1.0, 10.0)]
    finally:
        ray.shutdown()
    return trial_rows, sweep_rows


if __name__ == "__main__":
    raise SystemExit(main())
