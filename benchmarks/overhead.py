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
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

from benchmarks.search.peers import SEAMS
from hpo.scheduler import METRIC, STEP, asha_rungs, make_asha
from hpo.searcher import TPESearcher
from hpo.space import Parameter, SearchSpace

REPORTS = 4  # per trial: rung interval 1 of max 4 steps, ASHA rungs at steps 1, 2, 4
REDUCTION_FACTOR = 2
GOAL_SHORT_S = 0.3  # per trial, with 1-s trials
GOAL_LONG_SHARE = 0.03  # of the trial's time, with 10-s trials
GOAL_ASK_TELL_MS = 50.0  # at 1,000 trials
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


def sleeping_trainable(config: dict) -> None:
    """Sleeps its share of the trial between reports; the objective rewards x near 0.3."""
    from ray import tune

    seconds = config["seconds"] / REPORTS
    slept = 0.0
    started_at = time.time()
    for step in range(1, REPORTS + 1):
        started = time.perf_counter()
        time.sleep(seconds)
        slept += time.perf_counter() - started
        objective = -((config["x"] - 0.3) ** 2) + 0.01 * step
        metrics = {"slept_s": slept, "started_at": started_at, "reported_at": time.time()}
        tune.report({METRIC: objective, STEP: step, "final": float(step == REPORTS), **metrics})


def measure_trials(seconds: float, trials: int, workdir: Path) -> dict:
    from ray import tune

    searcher = TPESearcher(
        SPACE, workdir / "study.journal", "overhead", seed=0, startup_trials=4, rungs=asha_rungs(1, REPORTS, 2)
    )
    scheduler = make_asha(REPORTS, 1, REDUCTION_FACTOR)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(sleeping_trainable), {"cpu": 1}),
        param_space={"seconds": seconds},
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


def measure_ask_tell(trials: int, seam: str, repeats: int, workdir: Path) -> dict:
    rng = np.random.default_rng(trials)
    searcher = SEAMS[seam](
        SPACE,
        workdir / f"ask-tell-{seam}-{trials}.journal",
        "ask-tell",
        seed=0,
        startup_trials=4,
        rungs=asha_rungs(1, REPORTS, REDUCTION_FACTOR),
    )
    fill_study(searcher, trials, rng)
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
        "ask_ms": 1000 * statistics.median(asks),
        "ask_max_ms": 1000 * max(asks),
        "report_ms": 1000 * statistics.median(reports),
        "tell_ms": 1000 * statistics.median(tells),
        "ask_tell_ms": 1000 * (statistics.median(asks) + statistics.median(tells)),
    }


def markdown(trial_rows: list[dict], ask_rows: list[dict]) -> str:
    lines = [
        "# Engine overhead",
        "",
        "Real Ray Tune, one trial at a time, TPESearcher (journal on disk) + ASHA, sleeping trainables "
        f"({REPORTS} reports per trial). Per-trial overhead = (Tuner.fit wall time - Tune's fixed start-up and "
        "shutdown - time the trainables slept) / trials; it includes any sleep cut short when ASHA stops a trial. "
        "Share = per-trial overhead / nominal trial length.",
        "",
        "| trial length | trials | stopped early | wall s | fixed s | slept s | overhead / trial | share | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in trial_rows:
        if row["trial_seconds"] < 5:
            goal = f"<= {GOAL_SHORT_S} s: {'met' if row['overhead_per_trial_s'] <= GOAL_SHORT_S else 'NOT met'}"
        else:
            goal = f"<= {GOAL_LONG_SHARE:.0%}: {'met' if row['overhead_share'] <= GOAL_LONG_SHARE else 'NOT met'}"
        lines.append(
            f"| {row['trial_seconds']:g} s | {row['trials']} | {row['stopped_early']} | {row['wall_s']:.1f} | "
            f"{row['fixed_s']:.1f} | {row['trainable_s']:.1f} | {row['overhead_per_trial_s']:.3f} s | "
            f"{row['overhead_share']:.1%} | {goal} |"
        )
    lines += [
        "",
        "Searcher cost with the study already holding N trials (median of repeats; journal on disk):",
        "",
        "| seam | trials in study | ask ms | ask max ms | report ms | tell ms | ask + tell ms | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in ask_rows:
        goal = ""
        if row["trials"] >= 1000:
            goal = f"<= {GOAL_ASK_TELL_MS:g} ms: {'met' if row['ask_tell_ms'] <= GOAL_ASK_TELL_MS else 'NOT met'}"
        lines.append(
            f"| {row['seam']} | {row['trials']} | {row['ask_ms']:.1f} | {row['ask_max_ms']:.1f} | "
            f"{row['report_ms']:.1f} | {row['tell_ms']:.1f} | {row['ask_tell_ms']:.1f} | {goal} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/overhead"))
    parser.add_argument("--short-trials", type=int, default=30, help="1-s trials to run")
    parser.add_argument("--long-trials", type=int, default=10, help="10-s trials to run")
    parser.add_argument("--repeats", type=int, default=20, help="ask/tell repetitions per study size")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    scratch_root = args.out / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root) as scratch:
        workdir = Path(scratch).resolve()  # Ray Tune takes an absolute storage path or a URI
        ask_rows = [measure_ask_tell(trials, seam, args.repeats, workdir) for trials in (100, 1000) for seam in SEAMS]
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            trial_rows = [
                measure_trials(1.0, args.short_trials, workdir),
                measure_trials(10.0, args.long_trials, workdir),
            ]
        finally:
            ray.shutdown()
    scratch_root.rmdir()
    table = markdown(trial_rows, ask_rows)
    (args.out / "results.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps({"trials": trial_rows, "ask_tell": ask_rows}, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
