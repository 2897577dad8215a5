"""Scaling benchmark: ours and its strongest peers with 1, 4 and 16 asynchronous workers, at small budgets too.

    python -m benchmarks.search.scaling --out benchmarks/results/scaling          # the full tables, 5 seeds
    python -m benchmarks.search.scaling --quick --out benchmarks/results/tmp      # 1 task, 2 seeds

Runs ours, random + ASHA and Syne Tune's ASHA, BOHB, DEHB, Hyper-Tune and MOBSTER (those
installed: benchmarks.search.syne) with 1, 4 and 16 asynchronous workers through the
simulated-time backend, on the same tasks and budget as the search table
(benchmarks.search.run), against full random search's final incumbent. It runs 5 seeds
by default, half the search table's 10, for time. The Gaussian-process peers (Hyper-Tune,
MOBSTER) fit their model at every suggestion, minutes of CPU a run, so they run with a
budget of their own (`--model-budget`, 20 trainings): their rows stop there.

Prints, and writes to --out as results.md and results.json:

- per method and worker count, at the full budget: the budget fraction (compute before the
  incumbent matches full random search, over the budget; median over runs), the hit rate,
  the simulated hours to match, and the speedup over the same method with one worker (its
  simulated hours to match over these);
- the same runs read at 5, 10 and 20 full trainings besides the full budget
  (benchmarks.search.budgets): per budget, every method's simulated hours to match and
  final regret at each worker count, and ours against Syne Tune's BOHB run by run;
- the goals checked (`budgets.goal_lines`, and one worker against the search table).
"""

from __future__ import annotations

import argparse
import math

from benchmarks.search import budgets
from benchmarks.search.lcbench import N_EPOCHS
from benchmarks.search.methods import BASELINE, GRACE_EPOCHS, SLOW, SYNE, Method, available
from benchmarks.search.metrics import Summary
from benchmarks.search.problem import load_references
from benchmarks.search.report import fraction, publish, summaries, wall_line
from benchmarks.search.run import QUICK_TASKS, RunLog, begin, grid_parser, run_grid, run_settings

WORKERS = (1, 4, 16)
OURS = Method("ours", "ours", "strict-asha")
PEERS = (Method("random+asha", "random", "asha"), *SYNE)
MODEL_PEERS = SLOW  # a Gaussian process fit at every suggestion: minutes a run
PAIRED_WITH = "syne-bohb"  # the strongest peer of the earlier measurements: ours is paired with it run by run
MODEL_BUDGET = 20
MODEL_SEEDS = 2
ONE_WORKER_FRACTION = 0.115  # the search table's ours with one worker (benchmarks/README.md)
ONE_WORKER_SEEDS = 10  # the seeds behind that figure: each run's target is the median of this many random searches


def scaling_methods(workers: tuple[int, ...], names: str = "") -> tuple[list[Method], list[str]]:
    """Ours and every installed peer (or those `names` lists) at every worker count, and full random
    search (the targets); a line for each peer left out."""
    known = {m.name: m for m in (OURS, *PEERS)}
    asked = [n.strip() for n in names.split(",") if n.strip()] or list(known)
    unknown = [n for n in asked if n not in known]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; valid: {', '.join(known)}")
    kept, missing = available([known[n] for n in asked])
    methods = [Method(m.name, m.searcher, m.scheduler, workers=w) for m in kept for w in workers]
    return [*methods, Method(BASELINE, "random", "fifo")], missing


def speedup(single: Summary | None, multi: Summary) -> float:
    """One worker's simulated hours to match over these (nan when either never matches)."""
    return math.nan if single is None else budgets.speedup(single, multi)


def hours(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.3f}"  # 16 workers match within hundredths of an hour


def times(value: float) -> str:
    return "-" if value != value else f"{value:.1f}x"  # nan: not comparable


def table(overall: dict[str, Summary], methods: list[Method]) -> list[str]:
    lines = [
        f"| method | workers | budget fraction | hit rate | simulated h to match | speedup over 1 worker "
        f"| {PAIRED_WITH}'s h to match over these |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        if method.name == BASELINE or method.key not in overall:
            continue
        s = overall[method.key]
        single = overall.get(budgets.key(method.name, 1))
        peer = overall.get(budgets.key(PAIRED_WITH, method.workers))
        lines.append(
            f"| {method.name} | {method.workers} | {fraction(s.budget_fraction)} | {s.hit_rate:.2f} | "
            f"{hours(s.hours_to_match)} | {times(speedup(single, s))} | {times(speedup(peer, s))} |"
        )
    return lines


def one_worker_line(overall: dict[str, Summary], seeds: int) -> list[str]:
    """One worker against the search table's figure, only on as many seeds: with fewer, a run's
    target is the median of fewer random searches, and the same runs score differently."""
    ours_one = overall.get(OURS.key)
    if ours_one is None:
        return []
    if seeds == ONE_WORKER_SEEDS:
        met = ours_one.budget_fraction <= ONE_WORKER_FRACTION
        return [
            f"- one worker: budget fraction {fraction(ours_one.budget_fraction)} "
            f"(no worse than {ONE_WORKER_FRACTION}): {'met' if met else 'NOT met'}"
        ]
    return [
        f"- one worker: budget fraction {fraction(ours_one.budget_fraction)} on {seeds} seeds; the goal "
        f"(no worse than {ONE_WORKER_FRACTION}) is on {ONE_WORKER_SEEDS} seeds: not checked (--seeds {ONE_WORKER_SEEDS})"
    ]


def markdown(overall: dict[str, Summary], methods: list[Method], found: list[budgets.Budgeted], settings: dict) -> str:
    budget = settings["budget_trainings"]
    workers = settings["workers"]
    names = list(dict.fromkeys(m.name for m in methods if m.name != BASELINE))
    lines = [
        "# Scaling benchmark: LCBench (YAHPO-Gym surrogate), 1 to 16 asynchronous workers",
        "",
        f"Tasks: {', '.join(settings['tasks'])}; seeds: {settings['seeds']}; budget: {budget} full trainings "
        f"({budget * N_EPOCHS} epochs over all workers) per run"
        + (
            f"; {', '.join(settings['model_peers'])}: {settings['model_budget']} full trainings and "
            f"{settings['model_seeds']} seeds (a Gaussian process fit at every suggestion: minutes a run)"
            if settings["model_peers"]
            else ""
        )
        + ". Budget fraction: compute before the incumbent matches full random search's final incumbent, over the "
        "budget (median over runs). Simulated h to match: the simulated wall-clock until then (median over runs; "
        "never when under half the runs match). Speedup: one worker's simulated hours to match over these.",
        "",
        f"## At {budget} full trainings",
        "",
        *table(overall, methods),
        "",
        "## Small budgets",
        "",
        "The same runs read after 5, 10 and 20 full trainings: the target is full random search's result after "
        "as many. Cells: "
        + " / ".join(f"{w} worker{'s' * (w > 1)}" for w in workers)
        + "; regret: median normalized regret "
        f"at the end of the budget; paired: runs (same task and seed) in which ours matches sooner than "
        f"{PAIRED_WITH}, of those in which either matches.",
        "",
        *budgets.budget_tables(found, names, workers, OURS.name, PAIRED_WITH),
        "## Goals",
        "",
        *one_worker_line(overall, settings["seeds"]),
        *budgets.goal_lines(found, names, workers, OURS.name, PAIRED_WITH),
        "",
        *(f"Left out, not installed: {line}" for line in settings["left_out"]),
        wall_line(settings),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = grid_parser(__doc__, "benchmarks/results/scaling", 5, "one task, two seeds")
    parser.add_argument(
        "--model-budget", type=int, default=MODEL_BUDGET, help=f"full trainings for {', '.join(MODEL_PEERS)}"
    )
    parser.add_argument(
        "--model-seeds", type=int, default=MODEL_SEEDS, help=f"seeds for {', '.join(MODEL_PEERS)} (the first ones)"
    )
    parser.add_argument("--methods", default="", help="comma-separated: ours and the peers to run (default: all)")
    parser.add_argument("--workers", default=",".join(map(str, WORKERS)), help="comma-separated worker counts")
    parser.add_argument("--resume", action="store_true", help="keep the runs --out/runs.jsonl holds, run the rest")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds = ",".join(QUICK_TASKS), 2
    args.workers = tuple(sorted({int(w) for w in args.workers.split(",")}))
    args.model_budget = min(args.model_budget, args.budget)
    args.model_seeds = min(args.model_seeds, args.seeds)
    if min(args.seeds, args.budget, args.model_budget, args.model_seeds, *args.workers) < 1:
        parser.error("--seeds, --budget, --model-budget, --model-seeds and --workers must be >= 1")
    if 1 not in args.workers:
        parser.error(f"--workers must include 1 (the speedups are over one worker), got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, bench, tasks = begin(args.tasks)
    methods, missing = scaling_methods(args.workers, args.methods)
    for line in missing:
        print(f"left out: {line}")
    budget_epochs = args.budget * N_EPOCHS
    full = [m for m in methods if m.name not in MODEL_PEERS]
    model = [m for m in methods if m.name in MODEL_PEERS]
    log = RunLog(args.out / "runs.jsonl", args.resume)
    runs = run_grid(full, tasks, args.seeds, budget_epochs, GRACE_EPOCHS, args.jobs, log)
    if model:
        runs += run_grid(model, tasks, args.model_seeds, args.model_budget * N_EPOCHS, GRACE_EPOCHS, args.jobs, log)
    settings = {
        **run_settings(tasks, args, started, runs),
        "workers": list(args.workers),
        "model_budget": args.model_budget,
        "model_seeds": args.model_seeds,
        "model_peers": sorted({m.name for m in model}),
        "left_out": missing,
    }
    references = load_references(bench, tasks)
    at_full = [r for r in runs if r.method not in keys(model)]
    goal, overall, per_task = summaries(at_full, references, BASELINE, budget_epochs)
    shown = [b for b in budgets.BUDGETS if b < args.budget] + [args.budget]
    found = budgets.at_budgets(runs, references, BASELINE, shown, limits={k: args.model_budget for k in keys(model)})
    text = markdown(overall, methods, found, settings)
    publish(args.out, text, runs, goal, overall, per_task, references, settings)
    return 0


def keys(methods: list[Method]) -> set[str]:
    return {m.key for m in methods}


if __name__ == "__main__":
    raise SystemExit(main())
