"""Warm-start benchmark: ours started from earlier sweeps of other tasks against ours cold, on LCBench.

    python -m benchmarks.search.warm --out benchmarks/results/warm          # the full table, 10 seeds
    python -m benchmarks.search.warm --quick --out benchmarks/results/tmp   # 3 tasks, 1 seed, 10 trainings

Leave one task out: for each task and seed, ours runs cold (the search table's `ours`), and
warm, started from the cold runs of every other task with the same seed (their trials as
`hpo.search.history.History` objects, as `hpo sweep` reads them from earlier run directories:
each trial's configuration, its accuracy at every rung it reached, its best). Full random
search gives each task's target, as in the search table. Prints, and writes to --out as
results.md and results.json:

- per task, cold and warm: the budget fraction (median over seeds), the normalized regret
  after the budget (median), and the paired change of regret, warm less cold, with its
  90% bootstrap interval over seeds;
- the goals: warm needs at most half of cold's budget fraction (median over all runs), and
  on no task is warm's regret worse than cold's beyond noise (the interval above 0).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing

import numpy as np

from benchmarks.search.backend import RayDriver
from benchmarks.search.lcbench import N_EPOCHS
from benchmarks.search.methods import BASELINE, GRACE_EPOCHS, OURS, Method
from benchmarks.search.metrics import Run, Summary
from benchmarks.search.problem import load_references
from benchmarks.search.report import fraction, publish, summaries, wall_line
from benchmarks.search.run import (
    Job,
    RunLog,
    _init_worker,
    begin,
    grid_parser,
    run_all,
    run_grid,
    run_settings,
    simulate_job,
)
from hpo.search.history import History, PastTrial

WARM = Method("ours warm", "ours", "strict-asha")
GOAL_SHARE = 0.5  # warm's budget fraction at most this share of cold's
BOOTSTRAP = 2000
INTERVAL = 0.90


def history_of(driver: RayDriver, source: str) -> History:
    """A simulated run's trials as a History: each trial's accuracy at every rung it reached, and its best."""
    rungs = driver.searcher.rungs
    trials = []
    for trial in driver.trials:
        if trial.epochs == 0:
            continue
        accuracy = trial.curve.accuracy
        values = {rung: float(accuracy[rung - 1]) for rung in rungs if rung <= trial.epochs}
        trials.append(PastTrial(dict(trial.config), values, float(accuracy[: trial.epochs].max())))
    return History(source, tuple(trials))


def cold_job(job: Job) -> tuple[Run, History]:
    run, driver = simulate_job(job)
    return run, history_of(driver, f"{job.task}/{job.seed}")


def run_cold(tasks: list[str], seeds: int, budget_epochs: int, processes: int) -> tuple[list[Run], dict]:
    """Ours cold on every task and seed, and the histories its runs leave."""
    jobs = [Job(OURS, task, seed, budget_epochs, GRACE_EPOCHS) for task in tasks for seed in range(seeds)]
    if processes <= 1:
        _init_worker()
        done = [cold_job(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(processes, initializer=_init_worker) as pool:
            done = pool.map(cold_job, jobs, chunksize=1)
    runs = [run for run, _ in done]
    return runs, {(run.task, run.seed): history for run, history in done}


def warm_jobs(tasks: list[str], seeds: int, budget_epochs: int, histories: dict) -> list[Job]:
    """For each task and seed: ours warm-started from the other tasks' cold runs with that seed."""
    return [
        Job(WARM, task, seed, budget_epochs, GRACE_EPOCHS, tuple(histories[(other, seed)] for other in tasks if other != task))
        for task in tasks
        for seed in range(seeds)
    ]  # fmt: skip


def regret_change(cold: list[Run], warm: list[Run], regret) -> tuple[float, float, float]:
    """Warm's regret less cold's, paired by seed: the mean and its bootstrap interval."""
    by_seed = {run.seed: regret(run) for run in cold}
    changes = np.array([regret(run) - by_seed[run.seed] for run in warm if run.seed in by_seed])
    rng = np.random.default_rng(0)
    means = rng.choice(changes, (BOOTSTRAP, len(changes))).mean(axis=1)
    low, high = np.quantile(means, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2])
    return float(changes.mean()), float(low), float(high)


def markdown(
    overall: dict[str, Summary],
    per_task: dict[str, dict[str, Summary]],
    changes: dict[str, tuple[float, float, float]],
    settings: dict,
) -> str:
    cold, warm = overall[OURS.key], overall[WARM.key]
    lines = [
        "# Warm-start benchmark: LCBench (YAHPO-Gym surrogate), leave one task out",
        "",
        f"Tasks: {', '.join(settings['tasks'])}; seeds: {settings['seeds']}; budget: {settings['budget_trainings']} "
        "full trainings per run, one worker. Warm: ours started from ours' cold runs of every other task with the "
        "same seed. Budget fraction: compute before the incumbent matches full random search's final incumbent, "
        "over the budget (median over seeds). Regret: normalized regret after the budget (median). Change: warm's "
        f"regret less cold's, paired by seed: mean [{INTERVAL:.0%} bootstrap interval].",
        "",
        "| task | budget fraction, cold | warm | regret, cold | warm | change of regret |",
        "|---|---|---|---|---|---|",
    ]
    for task, by in per_task.items():
        mean, low, high = changes[task]
        lines.append(
            f"| {task} | {fraction(by[OURS.key].budget_fraction)} | {fraction(by[WARM.key].budget_fraction)} | "
            f"{by[OURS.key].regret:.3f} | {by[WARM.key].regret:.3f} | {mean:+.3f} [{low:+.3f}, {high:+.3f}] |"
        )
    lines.append(
        f"| all | {fraction(cold.budget_fraction)} | {fraction(warm.budget_fraction)} | {cold.regret:.3f} | "
        f"{warm.regret:.3f} | |"
    )
    share = warm.budget_fraction / cold.budget_fraction if cold.budget_fraction > 0 else math.inf
    worse = [task for task, (_, low, _) in changes.items() if low > 0]
    lines += [
        "",
        "## Goals",
        "",
        f"- budget fraction, warm {fraction(warm.budget_fraction)} against cold {fraction(cold.budget_fraction)}: "
        f"{share:.2f} of it (goal <= {GOAL_SHARE}): {'met' if share <= GOAL_SHARE else 'NOT met'}",
        "- regret after the budget no worse than cold beyond noise on every task: "
        + ("met" if not worse else f"NOT met ({', '.join(worse)})"),
        "",
        wall_line(settings),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = grid_parser(__doc__, "benchmarks/results/warm", 10, "three tasks, one seed, a 10-training budget")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds, args.budget = "126025,146212,167149", 1, 10
    if args.seeds < 1 or args.budget < 1:
        parser.error(f"--seeds and --budget must be >= 1, got {args.seeds} and {args.budget}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, bench, tasks = begin(args.tasks)
    if len(tasks) < 2:
        raise SystemExit("--tasks: leave one task out needs at least two tasks")
    budget_epochs = args.budget * N_EPOCHS
    cold, histories = run_cold(tasks, args.seeds, budget_epochs, args.jobs)
    warm = run_all(warm_jobs(tasks, args.seeds, budget_epochs, histories), args.jobs, RunLog(None))
    randoms = run_grid([Method(BASELINE, "random", "fifo")], tasks, args.seeds, budget_epochs, GRACE_EPOCHS, args.jobs)
    runs = cold + warm + randoms
    references = load_references(bench, tasks)
    goal, overall, per_task = summaries(runs, references, BASELINE, budget_epochs)

    def regret(run: Run) -> float:
        return references[run.task].regret(run.incumbent_at(budget_epochs))

    changes = {
        task: regret_change([r for r in cold if r.task == task], [r for r in warm if r.task == task], regret)
        for task in tasks
    }
    settings = run_settings(tasks, args, started, runs)
    text = markdown(overall, per_task, changes, settings)
    publish(args.out, text, runs, goal, overall, per_task, references, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
