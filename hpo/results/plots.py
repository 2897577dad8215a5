"""The report's plots, one PNG each, drawn from a run read back by `hpo.results.analysis`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hpo.results.analysis import RunRecord, best_rung, feasible_rungs, objective_of, pareto_rungs
from hpo.results.rundir import Status
from hpo.search.objective import FAILING_OBJECTIVE
from trainers.shared import Flag


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def trial_colors(record: RunRecord) -> dict[str, Any]:
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if len(record.trials) <= 10 else "tab20")
    return {t.trial_id: cmap(i % cmap.N) for i, t in enumerate(record.trials)}


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    pyplot().close(fig)
    return path


def plot_objective_vs_compute(record: RunRecord, path: Path) -> Path:
    """Every trial's objective at every rung against the training tokens spent; stopped trials dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = trial_colors(record)
    scored = [r["objective"] for r in record.rows if r.get("objective") not in (None, FAILING_OBJECTIVE)]
    floor = (min(scored) if scored else 0.0) - 0.1  # failing rungs are drawn here, not at -10
    use_tokens = all(r.get("tokens_seen") is not None for r in record.rows)
    for t in record.trials:
        xs = [r["tokens_seen"] if use_tokens else r["step"] for r in t.rungs if r.get("objective") is not None]
        ys = [max(r["objective"], floor) for r in t.rungs if r.get("objective") is not None]
        style = "-" if t.status == Status.COMPLETED else "--"
        ax.plot(xs, ys, style, marker="o", ms=3, color=colors[t.trial_id], label=f"{t.number} {t.status}")
        if t.status != Status.COMPLETED and xs:
            ax.plot(xs[-1], ys[-1], "x", color="black", ms=7)
        failing = [(x, y) for x, y, r in zip(xs, ys, t.rungs) if r.get(Flag.VIOLATION)]
        if failing:
            ax.plot(*zip(*failing), "v", color="red", ms=7)
    best = best_rung(record)
    if best is not None and best.get("objective") is not None:
        x = best["tokens_seen"] if use_tokens else best["step"]
        ax.plot(x, best["objective"], "*", ms=16, mfc="gold", mec="black", label="best rung")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.text(ax.get_xlim()[0], 0.0, " base model", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel("training tokens seen" if use_tokens else "optimizer steps")
    ax.set_ylabel("objective (lift − λ·regression)")
    ax.set_title("Objective vs compute (x: stopped by ASHA or budget, ▼: failing a limit)")
    ax.legend(title="trial", fontsize=7, ncol=2, loc="best")
    return save(fig, path)


def plot_lift_vs_regression(record: RunRecord, path: Path) -> Path:
    """Every rung in (general regression, domain lift), the feasible Pareto front and the limit."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = trial_colors(record)
    limit = record.limit
    feasible_regressions = [r["general_regression"] for r in feasible_rungs(record)]
    right = max([*feasible_regressions, limit or 0.0, 0.01]) * 1.3
    for t in record.trials:
        rungs = [r for r in t.rungs if r.get("domain_lift") is not None and r.get("general_regression") is not None]
        xs = [min(r["general_regression"], right) for r in rungs]
        ys = [r["domain_lift"] for r in rungs]
        markers = [">" if r["general_regression"] > right else "o" for r in rungs]
        for x, y, m in zip(xs, ys, markers):
            ax.plot(x, y, m, color=colors[t.trial_id], ms=5, alpha=0.85)
        ax.plot([], [], "o", color=colors[t.trial_id], label=str(t.number))
    front = pareto_rungs(record)
    if front:
        ax.plot(
            [r["general_regression"] for r in front],
            [r["domain_lift"] for r in front],
            "-",
            color="black",
            lw=1.2,
            drawstyle="steps-post",
        )
        ax.plot(
            [r["general_regression"] for r in front],
            [r["domain_lift"] for r in front],
            "o",
            mfc="none",
            mec="black",
            ms=11,
            label="Pareto front",
        )
    if limit is not None:
        ax.axvline(limit, color="red", ls="--", lw=1)
        ax.text(limit, ax.get_ylim()[1], " limit", color="red", va="top", fontsize=8)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlim(-0.02 * right, right * 1.05)
    ax.set_xlabel("general regression (relative perplexity rise; ► beyond the axis)")
    ax.set_ylabel(f"domain lift ({record.domain_metric})")
    ax.set_title("Domain lift vs general regression, every rung of every trial")
    ax.legend(title="trial", fontsize=7, ncol=2, loc="best")
    return save(fig, path)


def axis_position(value: Any, parameter: dict[str, Any]) -> float:
    """Where a parameter value sits on its parallel-coordinates axis, 0..1 over the search range (NaN: unset)."""
    if value is None:
        return math.nan
    if parameter["type"] == "choice":
        values = list(parameter["values"])
        return values.index(value) / max(len(values) - 1, 1) if value in values else 0.5
    low, high = parameter["low"], parameter["high"]
    if parameter["log"]:
        value, low, high = math.log(value), math.log(low), math.log(high)
    return (value - low) / (high - low) if high > low else 0.5


def axis_ends(parameter: dict[str, Any]) -> tuple[str, str]:
    if parameter["type"] == "choice":
        return str(parameter["values"][0]), str(parameter["values"][-1])
    return f"{parameter['low']:.3g}", f"{parameter['high']:.3g}"


def plot_parallel_coordinates(record: RunRecord, path: Path) -> Path:
    """One line per trial across its parameters (search range scaled to 0..1), coloured by best objective."""
    plt = pyplot()
    parameters = [
        p for p in record.spec["config"]["space"]["parameters"] if p["type"] == "choice" or p["low"] is not None
    ]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    scored = [t.best["objective"] for t in record.trials if t.best.get("objective") not in (None, FAILING_OBJECTIVE)]
    low, high = (min(scored), max(scored)) if scored else (0.0, 1.0)
    cmap = plt.get_cmap("viridis")
    xs = list(range(len(parameters)))
    for t in sorted(record.trials, key=lambda t: objective_of(t.best)):
        ys = [axis_position(t.params.get(p["name"]), p) for p in parameters]
        objective = t.best.get("objective")
        if objective is None or objective == FAILING_OBJECTIVE:
            ax.plot(xs, ys, ls="--", color="red", lw=1.2, alpha=0.8)
        else:
            shade = (objective - low) / (high - low) if high > low else 1.0
            ax.plot(xs, ys, color=cmap(shade), lw=2.0, alpha=0.9)
        ax.text(xs[-1] + 0.05, ys[-1], str(t.number), fontsize=7, va="center")
    for x, p in enumerate(parameters):
        ax.axvline(x, color="grey", lw=0.8)
        bottom, top = axis_ends(p)
        ax.text(x, -0.07, bottom, ha="center", va="top", fontsize=7)
        ax.text(x, 1.07, top, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(xs, [p["name"] + (" (log)" if p["log"] else "") for p in parameters], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.15)
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(low, high))
    fig.colorbar(mappable, ax=ax, label="best objective (red dashed: failing)")
    ax.set_title("Parameters of every trial (labels: trial numbers)")
    return save(fig, path)


def plot_importance(step: int, importances: dict[str, dict[str, float]], path: Path) -> Path:
    plt = pyplot()
    first = next(iter(importances.values()))
    names = sorted({p for values in importances.values() for p in values}, key=lambda n: first.get(n, 0.0))
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.45 * len(names) * max(len(importances), 1)))
    height = 0.8 / max(len(importances), 1)
    for k, (evaluator, values) in enumerate(importances.items()):
        ys = [i + k * height for i in range(len(names))]
        ax.barh(ys, [values.get(n, 0.0) for n in names], height=height, label=evaluator)
    ax.set_yticks([i + height * (len(importances) - 1) / 2 for i in range(len(names))], names)
    ax.set_xlabel("importance (normalized to sum to 1)")
    ax.set_title(f"Parameter importance at step {step} (Optuna)")
    ax.legend(fontsize=8)
    return save(fig, path)


def rung_survival(record: RunRecord) -> list[tuple[int, int]]:
    """(step, trials that reported it) for every rung step, in step order."""
    steps = sorted({int(r["step"]) for r in record.rows})
    return [(s, sum(1 for t in record.trials if any(int(r["step"]) == s for r in t.rungs))) for s in steps]


def plot_rung_survival(record: RunRecord, path: Path) -> Path:
    plt = pyplot()
    survival = rung_survival(record)
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    positions = range(len(survival))
    bars = ax.bar(positions, [n for _, n in survival], color="#4c72b0")
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(positions, [str(s) for s, _ in survival])
    ax.set_xlabel("rung (optimizer step)")
    ax.set_ylabel("trials that reached it")
    ax.set_title(f"ASHA rung survival ({len(record.trials)} trials)")
    return save(fig, path)


def plot_confusion(matrix: dict[str, dict[str, int]], path: Path) -> Path:
    plt = pyplot()
    labels, columns = list(matrix), list(next(iter(matrix.values())))
    counts = [[matrix[t][p] for p in columns] for t in labels]
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(columns), 1.2 + 0.7 * len(labels)))
    ax.imshow(counts, cmap="Blues")
    peak = max(max(row) for row in counts) or 1
    for i, row in enumerate(counts):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", color="white" if n > peak / 2 else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Best recipe, test split")
    return save(fig, path)
