"""Side-by-side search benchmark on LCBench learning curves.

    python -m benchmarks.search.run --out benchmarks/results/search          # the full table
    python -m benchmarks.search.run --quick --out benchmarks/results/tmp     # a 1-2 minute smoke run

Every method is a real Ray searcher + scheduler pair (benchmarks.search.methods) driven by
the simulated-time backend (benchmarks.search.backend); runs are spread over processes.
Writes results.md (the table), results.json (every run's incumbent trace and the
summaries) and regret.png to --out, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.search import syne
from benchmarks.search.backend import Driver
from benchmarks.search.lcbench import N_EPOCHS, LCBench
from benchmarks.search.methods import (
    ALL,
    BASELINE,
    GRACE_EPOCHS,
    OURS,
    PARALLEL,
    PEERS,
    SLOW,
    SYNE,
    Method,
    available,
    make_driver,
    syne_release,
)
from benchmarks.search.metrics import Run, Summary
from benchmarks.search.problem import DEV_TASKS, curve, lcbench_space, load_references
from benchmarks.search.report import fraction, hours, markdown, plot, publish, summaries
from hpo.search.history import History

QUICK_TASKS = ("167149",)
GOAL_FRACTION = 0.12
GOAL_REGRET = 0.10
PARALLEL_SLACK = 1.10  # 4 workers may be at most 10% worse than 1
SCRATCH = (
    Path("/dev/shm") if Path("/dev/shm").is_dir() else None
)  # journals: fsync is the simulation's, not the search's, cost


@dataclass(frozen=True)
class Job:
    method: Method
    task: str
    seed: int
    budget_epochs: int
    grace: int
    histories: tuple[History, ...] = ()  # earlier sweeps warm-starting ours (benchmarks.search.warm)


_bench: LCBench | None = None


def _quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray.tune.schedulers.hyperband").setLevel(logging.WARNING)
    logging.getLogger("syne_tune").setLevel(logging.ERROR)  # notices of extras not installed, ignored arguments


def _init_worker(first_on_path: str | None = None) -> None:
    """A benchmark process: quiet logs, the surrogate loaded once; Syne Tune 0.13 first on the path where asked."""
    global _bench
    if first_on_path is not None:
        sys.path.insert(0, first_on_path)
    _quiet()
    _bench = LCBench()


def run_job(job: Job) -> Run:
    """One method on one task with one seed."""
    return simulate_job(job)[0]


def simulate_job(job: Job) -> tuple[Run, Driver]:
    """One method on one task with one seed, in a scratch directory for its journal; the run, and the
    driver that holds its trials."""
    bench = _bench if _bench is not None else LCBench()
    from benchmarks.search.backend import simulate

    np.random.seed(job.seed)  # Ray's and Syne Tune's ASHA draw a bracket from numpy's global generator
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=SCRATCH, prefix="forge-search-") as scratch:
        space = lcbench_space(bench)
        curve_of = partial(curve, bench, job.task)
        driver = make_driver(job.method, space, job.seed, Path(scratch), job.grace, curve_of, job.histories)
        trace = simulate(driver, job.budget_epochs, job.method.workers)
    run = Run(
        method=job.method.key,
        task=job.task,
        seed=job.seed,
        epochs=tuple(trace.epochs),
        values=tuple(trace.values),
        seconds=tuple(trace.seconds),
        overlap=tuple(trace.overlap),
        trials=trace.trials,
        simulated_seconds=trace.simulated_seconds,
        max_running=trace.max_running,
        suggested_while_running=trace.suggested_while_running,
        wall_seconds=time.perf_counter() - started,
    )
    return run, driver


class RunLog:
    """Finished runs, one JSON line each (`runs.jsonl` in --out), written as they finish, so that a
    benchmark stopped part way (a crash, a full machine) goes on with `--resume` instead of starting over."""

    def __init__(self, path: Path | None, resume: bool = False) -> None:
        self.path = path
        self.done: dict[str, Run] = {}
        if path is None:
            return
        if resume and path.is_file():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                self.done[entry["job"]] = Run(
                    **{k: tuple(v) if isinstance(v, list) else v for k, v in entry["run"].items()}
                )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    @staticmethod
    def key(method: str, task: str, seed: int, budget_epochs: int, grace: int) -> str:
        return f"{method}|{task}|{seed}|{budget_epochs}|{grace}"

    def add(self, run: Run, budget_epochs: int, grace: int) -> Run:
        if self.path is not None:
            entry = {"job": self.key(run.method, run.task, run.seed, budget_epochs, grace), "run": asdict(run)}
            with self.path.open("a") as log:
                log.write(json.dumps(entry) + "\n")
        return run


def run_all(jobs: list[Job], processes: int, log: RunLog) -> list[Run]:
    """Every job's run. Syne Tune 0.13's peers run in processes of their own, with its folder first on the path."""
    legacy = [job for job in jobs if syne_release(job.method) == syne.LEGACY]
    current = [job for job in jobs if job not in legacy]
    runs = run_pooled(legacy, max(1, processes), str(syne.LEGACY_PATH), log) if legacy else []
    if processes <= 1:
        _init_worker()
        return runs + [log.add(run_job(job), job.budget_epochs, job.grace) for job in current]
    return runs + run_pooled(current, processes, None, log)


def run_pooled(jobs: list[Job], processes: int, first_on_path: str | None, log: RunLog) -> list[Run]:
    # slow (model-based) jobs first so the pool ends together
    ordered = sorted(jobs, key=lambda j: (j.method.searcher in ("random", "asha"), -j.method.workers))
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no Syne Tune imported yet
    with context.Pool(processes, initializer=_init_worker, initargs=(first_on_path,)) as pool:
        return [
            log.add(run, ordered[0].budget_epochs, ordered[0].grace)
            for run in pool.imap_unordered(run_job, ordered, chunksize=1)
        ]


def run_grid(
    methods: list[Method],
    tasks: list[int],
    seeds: int,
    budget_epochs: int,
    grace: int,
    processes: int,
    log: RunLog | None = None,
) -> list[Run]:
    """Every method on every task and seed, the runs in method order, then task, then seed; runs
    the log already holds are not run again."""
    log = log or RunLog(None)
    jobs = [Job(m, t, s, budget_epochs, grace) for m in methods for t in tasks for s in range(seeds)]
    keys = {job: RunLog.key(job.method.key, job.task, job.seed, budget_epochs, grace) for job in jobs}
    done = [log.done[keys[job]] for job in jobs if keys[job] in log.done]
    runs = done + run_all([job for job in jobs if keys[job] not in log.done], processes, log)
    order = {m.key: i for i, m in enumerate(methods)}
    return sorted(runs, key=lambda r: (order[r.method], r.task, r.seed))


def run_settings(tasks: list[int], args: argparse.Namespace, started: float, runs: list[Run]) -> dict:
    """What every results.json records of how its runs were made."""
    return {
        "tasks": tasks,
        "seeds": args.seeds,
        "budget_trainings": args.budget,
        "jobs": args.jobs,
        "wall_minutes": (time.perf_counter() - started) / 60,
        "run_cpu_minutes": sum(r.wall_seconds for r in runs) / 60,
    }


def comparisons(overall: dict[str, Summary]) -> list[str]:
    """The goals, checked: ours against every peer, and 4 workers against 1."""
    ours = overall[OURS.key]
    lines = ["## Goals", ""]
    lines.append(
        f"- ours: budget fraction {fraction(ours.budget_fraction)} (goal <= {GOAL_FRACTION}): "
        f"{'met' if ours.budget_fraction <= GOAL_FRACTION else 'NOT met'}; regret {ours.regret:.3f} "
        f"(goal <= {GOAL_REGRET}): {'met' if ours.regret <= GOAL_REGRET else 'NOT met'}"
    )
    peers = [overall[m.key] for m in (*PEERS, *SYNE) if m.key in overall]
    ahead_fraction = all(ours.budget_fraction <= p.budget_fraction for p in peers)
    ahead_regret = all(ours.regret <= p.regret for p in peers)
    lines.append(
        f"- ours ahead of every peer: budget fraction {'yes' if ahead_fraction else 'NO'}, "
        f"regret {'yes' if ahead_regret else 'NO'}"
    )
    for method in PARALLEL:
        single = overall.get(Method(method.name, method.searcher, method.scheduler).key)
        multi = overall.get(method.key)
        if single is None or multi is None:
            continue
        ok_fraction = multi.budget_fraction <= PARALLEL_SLACK * single.budget_fraction
        ok_regret = multi.regret <= PARALLEL_SLACK * single.regret or multi.regret - single.regret <= 0.005
        lines.append(
            f"- {method.key} vs 1 worker: budget fraction {fraction(multi.budget_fraction)} vs "
            f"{fraction(single.budget_fraction)}, regret {multi.regret:.3f} vs {single.regret:.3f}, "
            f"simulated hours to match random search {hours(multi.hours_to_match)} vs {hours(single.hours_to_match)}: "
            f"{'within 10%' if ok_fraction and ok_regret else 'MORE than 10% worse'}"
        )
        lines.append(
            f"  - less the compute the other workers spent while the matching trial trained: "
            f"{fraction(multi.fraction_less_overlap)} vs {fraction(single.budget_fraction)}"
        )
    return lines


def grid_parser(description: str, out: str, seeds: int, quick: str) -> argparse.ArgumentParser:
    """The options every LCBench benchmark takes: where to write, which tasks, seeds and budget, how many processes."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--tasks", default="dev", help="'dev' (the 8 development tasks), 'all' (34) or ids: 3945,7593")
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--budget", type=int, default=50, help="full trainings (52 epochs each) per run")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = grid_parser(__doc__, "benchmarks/results/search", 10, "one task, two seeds, a 20-training budget")
    parser.add_argument("--grace", type=int, default=GRACE_EPOCHS, help="ASHA's first rung, in epochs")
    parser.add_argument("--methods", default="", help="comma-separated method keys (default: all)")
    parser.add_argument("--resume", action="store_true", help="keep the runs --out/runs.jsonl holds, run the rest")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds, args.budget = ",".join(QUICK_TASKS), 2, 20
    if args.seeds < 1 or args.budget < 1:
        parser.error(f"--seeds and --budget must be >= 1, got {args.seeds} and {args.budget}")
    return args


def task_list(spec: str, bench: LCBench) -> list[str]:
    if spec == "dev":
        return list(DEV_TASKS)
    if spec == "all":
        return list(bench.task_ids)
    tasks = [t.strip() for t in spec.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in bench.task_ids]
    if unknown:
        raise SystemExit(f"--tasks: unknown LCBench task ids {unknown}; valid: {', '.join(bench.task_ids)}")
    return tasks


def method_list(spec: str) -> tuple[list[Method], list[str]]:
    """The methods asked for (all by default) that this installation can run, and a line for each left out.
    Full random search always runs: the targets are its results."""
    if not spec:
        return available([m for m in ALL if m.key not in SLOW])
    keys = [k.strip() for k in spec.split(",")]
    by_key = {m.key: m for m in ALL}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; valid: {', '.join(by_key)}")
    chosen = [by_key[k] for k in keys]
    if BASELINE not in keys:
        chosen.append(by_key[BASELINE])  # the target comes from full random search
    kept, missing = available(chosen)
    if missing:
        raise SystemExit("--methods: not installed: " + "; ".join(missing))
    return kept, missing


def begin(tasks: str) -> tuple[float, LCBench, list[str]]:
    """What every LCBench benchmark starts with: its clock, quiet logs, the surrogate, the tasks asked for."""
    started = time.perf_counter()
    _quiet()
    bench = LCBench()
    return started, bench, task_list(tasks, bench)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, bench, tasks = begin(args.tasks)
    methods, missing = method_list(args.methods)
    for line in missing:
        print(f"left out: {line}")
    references = load_references(bench, tasks)
    budget_epochs = args.budget * N_EPOCHS
    log = RunLog(args.out / "runs.jsonl", args.resume)
    runs = run_grid(methods, tasks, args.seeds, budget_epochs, args.grace, args.jobs, log)
    settings = {**run_settings(tasks, args, started, runs), "asha_grace_epochs": args.grace, "left_out": missing}
    goal, overall, per_task = summaries(runs, references, BASELINE, budget_epochs)
    lines = comparisons(overall) if OURS.key in overall else []
    table = markdown(overall, per_task, settings, lines)
    publish(args.out, table, runs, goal, overall, per_task, references, settings)
    plot(runs, references, budget_epochs, args.out / "regret.png")
    print(f"wrote {args.out / 'regret.png'}")
    return 0 if all(math.isfinite(r.simulated_seconds) for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
