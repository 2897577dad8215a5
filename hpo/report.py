"""`hpo report RUN_DIR`: what a sweep found, as one self-contained HTML page, PNG plots and a Markdown summary.

Everything is read from the run directory (spec.yaml, baseline.json, trials.parquet,
study.journal, best/), so a report can be rebuilt at any time, on any machine, without Ray
or W&B. The plots are embedded in the page as data URIs: the one file opens offline.

The analysis pieces (trial summaries, Pareto front, recommendation) are pure functions;
hpo.exports and hpo.tracking reuse them so that every view names the same trials.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpo.errors import InputError
from hpo.objective import DOMAIN_METRICS, FAILING_OBJECTIVE, domain_lift
from hpo.records import read_rows
from hpo.timing import time_summary, trial_times
from trainers.recipe import LORA_HYPERPARAMETERS, RFT_HYPERPARAMETERS

PARAM_PREFIX = "param_"
STRONG_RELATIVE_LIFT = 0.10  # above this, LoRA has shown the task is learnable: scale up
MANY_FAILING = 0.5  # share of trials over the regression limit that calls for a gentler recipe
MIN_IMPORTANCE_TRIALS = 3  # trials at one rung before parameter importance means anything
COMPONENTS = ("objective", "domain_lift", "general_regression", "general_change")


# --- reading a run ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialSummary:
    """One trial: its best rung (highest objective, earliest on ties), where and why it ended."""

    number: int  # 1, 2, ... in the order trials started
    trial_id: str
    params: dict[str, Any]
    status: str
    stop_reason: str
    last_step: int
    best: dict[str, Any]  # the trials.parquet row of the best rung
    rungs: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class RunRecord:
    path: Path
    spec: dict[str, Any]
    baseline: dict[str, float]
    rows: tuple[dict[str, Any], ...]
    trials: tuple[TrialSummary, ...]
    best: dict[str, Any] | None  # best/recipe.yaml
    test_scores: dict[str, Any] | None  # best/test_scores.json

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stage(self) -> str:
        return self.spec["config"]["recipe"]["stage"]

    @property
    def domain_metric(self) -> str:
        return DOMAIN_METRICS[self.stage].name

    @property
    def limit(self) -> float | None:
        return self.spec["config"]["objective"]["max_general_regression"]

    def final_table(self) -> tuple[list[str], list[list[Any]]]:
        """One row per trial: how it ended, its best rung's scores and its parameters."""
        names = sorted({k for t in self.trials for k in t.params})
        columns = ["trial", "trial_id", "status", "last_step", "best_step", *COMPONENTS, "stop_reason", *names]
        rows = [
            [t.number, t.trial_id, t.status, t.last_step, t.best["step"]]
            + [t.best.get(k) for k in COMPONENTS]
            + [t.stop_reason]
            + [t.params.get(k) for k in names]
            for t in self.trials
        ]
        return columns, rows


def read_optional(path: Path, reader) -> Any:
    return reader(path.read_text()) if path.is_file() else None


def load_run(run_dir: Path) -> RunRecord:
    """Read a run directory; raises InputError naming what is missing."""
    run_dir = Path(run_dir)
    missing = [n for n in ("spec.yaml", "baseline.json", "trials.parquet") if not (run_dir / n).is_file()]
    if missing:
        raise InputError([f"{run_dir}: {', '.join(missing)} not found (give a run directory written by `hpo sweep`)"])
    rows = tuple(read_rows(run_dir / "trials.parquet"))
    return RunRecord(
        path=run_dir,
        spec=yaml.safe_load((run_dir / "spec.yaml").read_text()),
        baseline=json.loads((run_dir / "baseline.json").read_text())["metrics"],
        rows=rows,
        trials=tuple(summarize_trials(rows)),
        best=read_optional(run_dir / "best" / "recipe.yaml", yaml.safe_load),
        test_scores=read_optional(run_dir / "best" / "test_scores.json", json.loads),
    )


def summarize_trials(rows: Sequence[dict[str, Any]]) -> list[TrialSummary]:
    """Group trials.parquet rows by trial; trials are numbered in the order they first reported."""
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r.get("trial_started_at") or r.get("recorded_at") or 0.0, r["step"])):
        by_trial.setdefault(row["trial_id"], []).append(row)
    trials = []
    for number, (trial_id, rungs) in enumerate(by_trial.items(), start=1):
        rungs.sort(key=lambda r: r["step"])
        scored = [r for r in rungs if r.get("objective") is not None] or rungs
        best = max(scored, key=lambda r: (objective_of(r), -r["step"]))
        params = {k[len(PARAM_PREFIX) :]: v for k, v in rungs[0].items() if k.startswith(PARAM_PREFIX)}
        last = rungs[-1]
        status, reason = last.get("status") or "running", last.get("stop_reason") or ""
        trials.append(TrialSummary(number, trial_id, params, status, reason, int(last["step"]), best, tuple(rungs)))
    return trials


# --- analysis -----------------------------------------------------------------------------


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (domain_lift, general_regression) points no other point beats on both.

    Lift is maximized and regression minimized; a point is dominated when another is at least
    as good on both and better on one. Non-finite points are never on the front. The indices
    come back by increasing regression, the order a front is drawn in.
    """
    finite = [i for i, (lift, regression) in enumerate(points) if math.isfinite(lift) and math.isfinite(regression)]

    def dominated(i: int) -> bool:
        lift, regression = points[i]
        return any(
            points[j][0] >= lift and points[j][1] <= regression and points[j] != points[i] for j in finite if j != i
        )

    return sorted((i for i in finite if not dominated(i)), key=lambda i: (points[i][1], -points[i][0]))


def feasible_rungs(record: RunRecord) -> list[dict[str, Any]]:
    """Rungs that passed every limit and have both components: the candidates a user could pick."""
    return [
        r
        for r in record.rows
        if not r.get("violation") and r.get("domain_lift") is not None and r.get("general_regression") is not None
    ]


def pareto_rungs(record: RunRecord) -> list[dict[str, Any]]:
    """The feasible rungs on the lift/regression front (each rung is a recipe: stop at that step)."""
    candidates = feasible_rungs(record)
    front = pareto_front([(r["domain_lift"], r["general_regression"]) for r in candidates])
    return [candidates[i] for i in front]


def best_rung(record: RunRecord) -> dict[str, Any] | None:
    """The trials.parquet row best/recipe.yaml was exported from."""
    if record.best is None:
        return None
    expected = record.best["expected"]
    rows = (r for r in record.rows if r["trial_id"] == expected["trial_id"] and r["step"] == expected["step"])
    return next(rows, None)


def objective_of(row: dict[str, Any]) -> float:
    """A row's objective; a rung that reported none ranks below every score."""
    objective = row.get("objective")
    return -math.inf if objective is None else objective


def ranked_trials(record: RunRecord) -> list[TrialSummary]:
    """Trials by their best rung's objective, best first."""
    return sorted(record.trials, key=lambda t: -objective_of(t.best))


def relative_change(value: float, base: float) -> float:
    """value / base - 1, with a zero base read as "any gain is a full gain"."""
    if base == 0:
        return math.inf if value > 0 else 0.0
    return value / base - 1.0


def relative_lift(value: float, base: float, stage: str) -> float:
    """The domain gain relative to the base: already relative for perplexity-like metrics."""
    metric = DOMAIN_METRICS[stage]
    if not metric.higher_is_better:
        return domain_lift(value, base, metric)
    return relative_change(value, base) if base >= 0 else (value - base) / abs(base)


# What to do after a clear win, per stage.
SCALE_UP = {
    "sft": "LoRA has shown the task is learnable from this data: a full-rank SFT run, or RFT where answers "
    "can be checked automatically, is the next step.",
    "cpt": "The domain text is being learnt: a full-rank continued pre-training run, then SFT on the task, "
    "is the next step.",
    "rft": "The reward is being learnt: a longer RFT run on more prompts, or full-rank RFT, is the next step.",
}


@dataclass(frozen=True)
class Recommendation:
    kind: str  # no-lift | over-limit | strong | modest
    headline: str
    advice: str


def recommend(
    relative_lift: float,
    general_regression: float,
    limit: float | None,
    failing_share: float = 0.0,
    stage: str = "sft",
) -> Recommendation:
    """The next step, following the usual guidance for customizing a model.

    A clear relative lift with general capability intact says the task is learnable from the
    data: a full-rank run, or reinforcement fine-tuning (RFT) where answers can be checked,
    is where more gain lies. Regression past the limit says the recipe forgets too much:
    more general data in the mix or a lower learning rate.
    """
    caution = ""
    if failing_share >= MANY_FAILING:
        caution = (
            f" {failing_share:.0%} of the trials crossed the regression limit: keep general data in the mix"
            " and the learning rate low in follow-up runs."
        )
    if limit is not None and general_regression > limit:
        return Recommendation(
            "over-limit",
            f"General regression {general_regression:.1%} is above the limit {limit:.1%}.",
            "Put more general data in the training mix (a lower mixing_ratio) or lower the learning rate, "
            "then sweep again." + caution,
        )
    if relative_lift <= 0:
        return Recommendation(
            "no-lift",
            "No recipe beat the base model.",
            "Check the data first (labels, answer format, parse rate), then widen the learning-rate range "
            "or give trials more steps." + caution,
        )
    if relative_lift > STRONG_RELATIVE_LIFT:
        lift = (
            "A lift from a base score of zero" if math.isinf(relative_lift) else f"A {relative_lift:.1%} relative lift"
        )
        return Recommendation(
            "strong",
            f"{lift} with general regression {general_regression:.1%} (within the limit).",
            SCALE_UP[stage] + caution,
        )
    return Recommendation(
        "modest",
        f"A modest {relative_lift:.1%} relative lift with general regression {general_regression:.1%}.",
        "More or cleaner domain data, or longer training, is likely to pay off before a costlier "
        "full-rank run." + caution,
    )


def recommend_for(record: RunRecord) -> Recommendation:
    """The recommendation from the held-out test scores when there are some, else the validation rung."""
    if record.best is None:
        return recommend(0.0, 0.0, record.limit, 1.0)
    if record.test_scores:
        base, best = record.test_scores["base"], record.test_scores["best"]
    else:
        base, best = record.baseline, record.best["expected"]
    lift = relative_lift(best[record.domain_metric], base[record.domain_metric], record.stage)
    regression = max(0.0, relative_change(best["general_perplexity"], base["general_perplexity"]))
    failing = [t for t in record.trials if t.rungs[-1].get("violation")]
    return recommend(lift, regression, record.limit, len(failing) / max(len(record.trials), 1), record.stage)


def importance_rung(trial_steps: Sequence[Sequence[int]], minimum: int = MIN_IMPORTANCE_TRIALS) -> int | None:
    """The highest step at least `minimum` trials reported: every trial there is compared at one fidelity."""
    counts: dict[int, int] = {}
    for steps in trial_steps:
        for step in set(steps):
            counts[step] = counts.get(step, 0) + 1
    reached = [step for step, count in counts.items() if count >= minimum]
    return max(reached) if reached else None


def parameter_importance(record: RunRecord) -> tuple[int | None, dict[str, dict[str, float]], str]:
    """Optuna's importance evaluators over the study's trials at one rung: (step, {evaluator: {param: share}}, note).

    Optuna's evaluators read completed trials only, and with ASHA most trials are pruned; so
    each trial's intermediate value at one rung they all reached becomes a completed trial of
    an in-memory study. fANOVA needs scikit-learn; PED-ANOVA needs nothing more.
    """
    import optuna

    journal = record.path / "study.journal"
    if not journal.is_file():
        return None, {}, "no study.journal in the run directory"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    try:
        study = optuna.load_study(study_name=record.spec["config"]["name"], storage=storage)
    except KeyError:
        return None, {}, f"study.journal holds no study named {record.spec['config']['name']!r}"
    trials = [t for t in study.get_trials(deepcopy=False) if t.params and t.intermediate_values]
    step = importance_rung([list(t.intermediate_values) for t in trials])
    if step is None:
        return None, {}, f"needs at least {MIN_IMPORTANCE_TRIALS} trials that reached a common rung"
    at_rung = optuna.create_study(direction="maximize")
    for t in trials:
        if step in t.intermediate_values:
            at_rung.add_trial(
                optuna.trial.create_trial(
                    params=t.params, distributions=t.distributions, value=t.intermediate_values[step]
                )
            )
    evaluators = {
        "PED-ANOVA": optuna.importance.PedAnovaImportanceEvaluator,
        "fANOVA": lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
    }
    results, notes = {}, []
    for name, evaluator in evaluators.items():
        try:
            results[name] = dict(optuna.importance.get_param_importances(at_rung, evaluator=evaluator()))
        except ImportError:
            notes.append(f"{name} needs scikit-learn")
        except (RuntimeError, ValueError) as err:
            notes.append(f"{name}: {str(err).splitlines()[0]}")
    return step, results, "; ".join(notes)


# --- plots --------------------------------------------------------------------------------


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
        style = "-" if t.status == "completed" else "--"
        ax.plot(xs, ys, style, marker="o", ms=3, color=colors[t.trial_id], label=f"{t.number} {t.status}")
        if t.status != "completed" and xs:
            ax.plot(xs[-1], ys[-1], "x", color="black", ms=7)
        failing = [(x, y) for x, y, r in zip(xs, ys, t.rungs) if r.get("violation")]
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


# --- the page -----------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class Section:
    title: str
    tables: tuple[tuple[list[str], list[list[Any]]], ...] = ()
    text: str = ""
    image: Path | None = None
    caption: str = ""


def used_hyperparameters(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe's hyperparameters its stage and method use (GRPO's only for rft, LoRA's only for lora)."""
    unused = set() if recipe["stage"] == "rft" else set(RFT_HYPERPARAMETERS)
    if recipe["method"] != "lora":
        unused |= LORA_HYPERPARAMETERS
    return {k: v for k, v in recipe["hyperparameters"].items() if k not in unused}


def metric_rows(keys: Sequence[str], *columns: dict[str, Any]) -> list[list[Any]]:
    return [[k, *[c.get(k) for c in columns]] for k in keys if any(k in c for c in columns)]


def sections(record: RunRecord, out: Path) -> list[Section]:
    advice = recommend_for(record)
    found = [
        Section("Recommendation", text=f"{advice.headline} {advice.advice}"),
        Section("Baseline", ((["metric", "base model"], metric_rows(list(record.baseline), record.baseline)),)),
    ]
    if record.best is not None:
        expected = record.best["expected"]
        params = used_hyperparameters(record.best["recipe"])
        tuned = {p["name"] for p in record.spec["config"]["space"]["parameters"]}
        trial = next((t for t in record.trials if t.trial_id == expected["trial_id"]), None)
        tables = [
            (["hyperparameter", "value", "searched"], [[k, v, "yes" if k in tuned else ""] for k, v in params.items()]),
            (
                ["metric", "base model", "best (validation)"],
                metric_rows(list(record.baseline), record.baseline, expected),
            ),
        ]
        if record.test_scores:
            scores = record.test_scores
            header = ["metric", f"base (test, {scores['examples']})", f"best (test, {scores['examples']})"]
            tables.append((header, metric_rows(list(scores["base"]), scores["base"], scores["best"])))
        where = f"trial {trial.number if trial else '?'} ({expected['trial_id']}) at step {expected['step']}"
        text = f"Best rung: {where}, objective {expected['objective']:+.4f}. Recipe: best/recipe.yaml."
        found.append(Section("Best recipe", tuple(tables), text))
    found += plot_sections(record, out)
    columns, rows = record.final_table()
    found.append(Section("All trials", ((columns, rows),)))
    found.append(time_section(record))
    dashboard = f"optuna-dashboard {record.path / 'study.journal'}"
    wandb_dir = record.path / "wandb"
    mirrors = f"W&B offline runs: `wandb sync {wandb_dir}/offline-run-*`. " if wandb_dir.is_dir() else ""
    found.append(Section("More", text=f"{mirrors}Optuna's dashboard opens the study: `{dashboard}`."))
    return found


def time_section(record: RunRecord) -> Section:
    numbers = {t.trial_id: t.number for t in record.trials}
    times = trial_times(record.rows)
    columns = ["trial", "trial_id", "wall s", "training s", "probes s", "overhead s", "overhead"]
    rows = [
        [numbers.get(t.trial_id), t.trial_id, *(round(s, 1) for s in (t.wall, t.train, t.probes, t.overhead))]
        + [f"{t.overhead_share:.1%}"]
        for t in times
    ]
    return Section("Trial time", ((columns, rows),), text=time_summary(times).capitalize() + ".")


def plot_sections(record: RunRecord, out: Path) -> list[Section]:
    found = [
        Section(
            "Objective vs compute",
            image=plot_objective_vs_compute(record, out / "objective_vs_compute.png"),
            caption="Stopped trials are dashed and end in ×; failing rungs (▼) are drawn at the bottom.",
        ),
        Section(
            "Domain lift vs general regression",
            image=plot_lift_vs_regression(record, out / "lift_vs_regression.png"),
            caption="Each point is a rung (a recipe: stop there). Ringed: the Pareto front of rungs within the limit.",
        ),
        Section(
            "Parameters",
            image=plot_parallel_coordinates(record, out / "parallel_coordinates.png"),
            caption="Parallel coordinates over the search range; colour is the trial's best objective.",
        ),
    ]
    step, importances, note = parameter_importance(record)
    if importances:
        image = plot_importance(step, importances, out / "importance.png")
        caption = (
            f"Each trial's objective at step {step}, the highest rung at least {MIN_IMPORTANCE_TRIALS} trials reached."
        )
        found.append(Section("Parameter importance", image=image, caption=caption + (f" ({note})" if note else "")))
    else:
        found.append(Section("Parameter importance", text=f"Not computed: {note}."))
    found.append(Section("ASHA rung survival", image=plot_rung_survival(record, out / "rung_survival.png"), caption=""))
    if record.test_scores and record.test_scores.get("confusion"):
        image = plot_confusion(record.test_scores["confusion"], out / "confusion.png")
        found.append(Section("Confusion matrix", image=image, caption="Rows: true labels; columns: the answers."))
    return found


STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 62em;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f4f4f4; } .scroll { overflow-x: auto; } figure { margin: 0.6em 0; } img { max-width: 100%; }
figcaption { color: #555; font-size: 0.85em; } code { background: #f4f4f4; padding: 0 0.2em; }
.recommendation { background: #eef6ee; border-left: 4px solid #4a4; padding: 0.6em 1em; }
"""


def data_uri(image: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode("ascii")


def inline_code(text: str) -> str:
    """Markdown-style `code` spans to <code> (the text is escaped first)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(record: RunRecord, found: Sequence[Section]) -> str:
    spec = record.spec
    meta = (
        f"{spec['config']['recipe']['stage']}/{spec['config']['recipe']['method']} on "
        f"{spec['config']['recipe']['model']} · {len(record.trials)} trials · spec {spec['spec_hash']}"
    )
    parts = [f"<h1>Sweep report: {html.escape(record.name)}</h1><p class='meta'>{html.escape(meta)}</p>"]
    for s in found:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            css = " class='recommendation'" if s.title == "Recommendation" else ""
            parts.append(f"<p{css}>{inline_code(s.text)}</p>")
        parts += [html_table(columns, rows) for columns, rows in s.tables]
        if s.image is not None:
            alt = html.escape(s.title)
            caption = f"<figcaption>{html.escape(s.caption)}</figcaption>" if s.caption else ""
            parts.append(f"<figure><img alt='{alt}' src='{data_uri(s.image)}'>{caption}</figure>")
    body = "\n".join(parts)
    title = html.escape(f"{record.name}: sweep report")
    return f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"


def render_markdown(record: RunRecord, found: Sequence[Section]) -> str:
    parts = [f"# Sweep report: {record.name}", f"spec `{record.spec['spec_hash']}` · {len(record.trials)} trials"]
    for s in found:
        parts.append(f"## {s.title}")
        if s.text:
            parts.append(s.text)
        parts += [md_table(columns, rows) for columns, rows in s.tables]
        if s.image is not None:
            parts.append(f"![{s.title}]({s.image.name})" + (f"\n\n{s.caption}" if s.caption else ""))
    return "\n\n".join(parts) + "\n"


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write RUN_DIR/report/index.html (self-contained), summary.md and the PNGs; returns (html, md)."""
    record = load_run(run_dir)
    if not record.trials:
        raise InputError([f"{record.path / 'trials.parquet'}: no trial reported a rung; nothing to report"])
    out = record.path / "report"
    out.mkdir(exist_ok=True)
    found = sections(record, out)
    page, summary = out / "index.html", out / "summary.md"
    page.write_text(render_html(record, found), encoding="utf-8")
    summary.write_text(render_markdown(record, found), encoding="utf-8")
    return page, summary
