"""The benchmark's written results: a Markdown table, a JSON record, regret-vs-compute plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks.search.lcbench import N_EPOCHS
from benchmarks.search.metrics import Run, Summary, regret_curve, summarize, targets
from benchmarks.search.problem import Reference

GRID_POINTS = 60


def fraction(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.3f}"


def hours(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.2f}"


def summaries(
    runs: Sequence[Run], references: dict[str, Reference], baseline: str, budget_epochs: int
) -> tuple[dict[str, float], dict[str, Summary], dict[str, dict[str, Summary]]]:
    """Overall and per-task summaries of every method, against the baseline's per-task targets."""
    goal = targets(runs, baseline, budget_epochs)
    methods = list(dict.fromkeys(run.method for run in runs))
    overall = {m: summarize([r for r in runs if r.method == m], references, goal, budget_epochs) for m in methods}
    per_task = {
        task: {
            m: summarize([r for r in runs if r.method == m and r.task == task], references, goal, budget_epochs)
            for m in methods
        }
        for task in goal
    }
    return goal, overall, per_task


def markdown(
    overall: dict[str, Summary],
    per_task: dict[str, dict[str, Summary]],
    settings: dict,
    comparisons: list[str],
) -> str:
    budget = settings["budget_trainings"]
    lines = [
        "# Search benchmark: LCBench (YAHPO-Gym surrogate)",
        "",
        f"Tasks: {', '.join(settings['tasks'])}; seeds: {settings['seeds']}; budget: {budget} full trainings "
        f"({budget * N_EPOCHS} epochs) per run; objective: validation accuracy (max).",
        "Budget fraction: compute a run needs before its incumbent matches full random search's final incumbent "
        "(per task, the median over seeds), over the budget; median over runs, `never` when under half hit it. "
        f"Regret: normalized regret after {budget} full trainings (0 = best of 10,000 random configurations, "
        "1 = the median random configuration); median over runs. Simulated h to match: the simulated wall-clock "
        "(the surrogate's epoch times, a run's workers in parallel) before the incumbent matches that target; "
        "median over runs.",
        "",
        "| method | workers | budget fraction | hit rate | regret | mean regret | trials/run | simulated h/run "
        "| simulated h to match |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, s in overall.items():
        workers = key.rsplit(" x", 1)[1] if " x" in key else "1"
        lines.append(
            f"| {key} | {workers} | {fraction(s.budget_fraction)} | {s.hit_rate:.2f} | {s.regret:.3f} | "
            f"{s.regret_mean:.3f} | {s.trials:.0f} | {s.simulated_hours:.2f} | {hours(s.hours_to_match)} |"
        )
    lines += ["", *comparisons, "", "## Per task (budget fraction / regret)", ""]
    methods = list(overall)
    lines.append("| task | " + " | ".join(methods) + " |")
    lines.append("|---|" + "---|" * len(methods))
    for task, by_method in per_task.items():
        cells = [f"{fraction(by_method[m].budget_fraction)} / {by_method[m].regret:.3f}" for m in methods]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", *(f"Left out, not installed: {line}" for line in settings.get("left_out", ()))]
    lines += [wall_line(settings)]
    return "\n".join(lines) + "\n"


def wall_line(settings: dict) -> str:
    return f"Wall time of the benchmark: {settings['wall_minutes']:.1f} min on {settings['jobs']} processes."


def plot(runs: Sequence[Run], references: dict[str, Reference], budget_epochs: int, path: Path) -> None:
    """Median normalized regret (and its interquartile band) vs compute, all tasks pooled, plus one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.geomspace(N_EPOCHS / 10, budget_epochs, GRID_POINTS)
    methods = list(dict.fromkeys(run.method for run in runs))
    tasks = list(dict.fromkeys(run.task for run in runs))
    panels = [("all tasks", tasks), *((task, [task]) for task in tasks)]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for axis, (title, chosen) in zip(axes.flat, panels):
        for method in methods:
            selected = [r for r in runs if r.method == method and r.task in chosen]
            curves = regret_curve(selected, references, grid)
            x = grid / N_EPOCHS
            axis.plot(x, np.median(curves, axis=0), label=method, linewidth=2 if method.startswith("ours") else 1)
            if title == "all tasks":
                low, high = np.quantile(curves, [0.25, 0.75], axis=0)
                axis.fill_between(x, low, high, alpha=0.08)
        axis.set_xscale("log")
        axis.set_yscale("symlog", linthresh=0.01)
        axis.set_title(title)
        axis.set_xlabel("compute (full trainings)")
        axis.set_ylabel("normalized regret")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def publish(
    out: Path,
    text: str,
    runs: Sequence[Run],
    goal: dict[str, float],
    overall: dict[str, Summary],
    per_task: dict[str, dict[str, Summary]],
    references: dict[str, Reference],
    settings: dict,
) -> None:
    """The table to results.md and the screen; every run, target and summary to results.json."""

    def clean(value):
        return None if isinstance(value, float) and math.isinf(value) else value

    document = {
        "settings": settings,
        "references": {task: asdict(r) for task, r in references.items()},
        "targets": goal,
        "summary": {m: {k: clean(v) for k, v in asdict(s).items()} for m, s in overall.items()},
        "per_task": {
            task: {m: {k: clean(v) for k, v in asdict(s).items()} for m, s in by.items()}
            for task, by in per_task.items()
        },
        "runs": [asdict(run) for run in runs],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(document, indent=None, separators=(",", ":")) + "\n")
    print(text)
    print(f"wrote {out / 'results.md'}, results.json")
