"""`hpo report RUN_DIR`: what a sweep found, as one self-contained HTML page, PNG plots and a Markdown summary.

Everything is read from the run directory (spec.yaml, baseline.json, trials.parquet,
study.journal, best/), so a report can be rebuilt at any time, on any machine, without Ray
or W&B. The plots are embedded in the page as data URIs: the one file opens offline.

The run is read back by hpo.results.analysis and drawn by hpo.results.plots; this module adds the
recommendation and parameter importance, and lays out the page.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.config.errors import InputError
from hpo.judge.outcome import figure_value
from hpo.judge.verdict import judge, judging_of, p_text
from hpo.results.analysis import RunRecord, load_run
from hpo.results.plots import (
    plot_confusion,
    plot_importance,
    plot_lift_vs_regression,
    plot_objective_vs_compute,
    plot_parallel_coordinates,
    plot_rung_survival,
)
from hpo.results.rundir import RunDir, SweepState, partial_line
from hpo.run.timing import time_summary, trial_times
from hpo.search.objective import domain_floor, domain_lift
from trainers.recipe import LORA_HYPERPARAMETERS
from trainers.shared import INTERVAL_SUFFIXES, Flag
from trainers.stages import DEFAULT_STAGE, DomainMetric, Stage

STRONG_RELATIVE_LIFT = 0.10  # above this, LoRA has shown the task is learnable: scale up
MANY_FAILING = 0.5  # share of trials over the regression limit that calls for a gentler recipe
MIN_IMPORTANCE_TRIALS = 3  # trials at one rung before parameter importance means anything


def relative_change(value: float, base: float) -> float:
    """value / base - 1, with a zero base read as "any gain is a full gain"."""
    if base == 0:
        return math.inf if value > 0 else 0.0
    return value / base - 1.0


def relative_lift(value: float, base: float, metric: DomainMetric) -> float:
    """The domain gain relative to the base: already relative for perplexity-like metrics."""
    if not metric.higher_is_better:
        return domain_lift(value, base, metric)
    return relative_change(value, base) if base >= 0 else (value - base) / abs(base)


@dataclass(frozen=True)
class Recommendation:
    kind: str  # over-limit | regressed | not-learned | below-min-lift | validation-only | no-lift | strong | modest
    headline: str
    advice: str


def recommend(
    relative_lift: float,
    general_regression: float,
    limit: float | None,
    failing_share: float = 0.0,
    stage: Stage = DEFAULT_STAGE,
    verdict: Mapping[str, Any] | None = None,
) -> Recommendation:
    """The next step, following the whole verdict and the usual guidance for customizing a model.

    Only a task learned on the held-out test split with general ability held (hpo.judge.verdict) says
    the task is learnable from the data: then a clear relative lift points to a full-rank run,
    or reinforcement fine-tuning (RFT) where answers can be checked. General ability that
    regressed (a probe over its limit, a benchmark below the base) says the recipe forgets too
    much: more general data in the mix or a lower learning rate. A task not learned, or learned
    below task.min_lift, gets the verdict's next steps; a verdict read off the validation split
    asks for a test split first. None of these recommends a larger run.
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
    if verdict is not None and (not verdict["passed"] or verdict["general"] == "regressed"):
        return Recommendation(verdict_kind(verdict), verdict_headline(verdict), verdict_advice(verdict) + caution)
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
            stage.scale_up + caution,
        )
    return Recommendation(
        "modest",
        f"A modest {relative_lift:.1%} relative lift with general regression {general_regression:.1%}.",
        "More or cleaner domain data, or longer training, is likely to pay off before a costlier "
        "full-rank run." + caution,
    )


def verdict_kind(verdict: Mapping[str, Any]) -> str:
    """Which part of a verdict that does not pass decides the advice: general ability first, then the split, then the task."""
    if verdict["general"] == "regressed":
        return "regressed"
    if verdict["split"] != "test":
        return "validation-only"
    return {"not_learned": "not-learned", "below_min_lift": "below-min-lift"}[verdict["status"]]


def verdict_headline(verdict: Mapping[str, Any]) -> str:
    return verdict["general_line"] if verdict["general"] == "regressed" else verdict["headline"]


def verdict_advice(verdict: Mapping[str, Any]) -> str:
    return f"Before any larger run: {'; '.join(verdict['next_steps'])}."


def verdict_of(record: RunRecord) -> dict[str, Any]:
    """The verdict the sweep's final check wrote, or one read off the validation split."""
    if record.test_scores and "status" in record.test_scores.get("verdict", {}):
        return record.test_scores["verdict"]  # a record from before the two-part verdict is judged again below
    judging = judging_of(record.spec["config"])
    return judge(None, record.domain, judging, (record.best["expected"], record.baseline)).to_dict()


def recommend_for(record: RunRecord) -> Recommendation:
    """The recommendation from the held-out test scores when there are some, else the validation rung.

    The lift is measured above what a recipe must beat: the base model and, for a label task,
    the majority class."""
    if record.best is None:
        return recommend(0.0, 0.0, record.limit, 1.0)
    metric = record.domain
    if record.test_scores and record.test_scores["split"]:
        base, best = record.test_scores["base"], record.test_scores["best"]
        floor = max(base[metric.name], (record.test_scores.get("chance") or {}).get("majority", -math.inf))
    else:
        base, best = record.baseline, record.best["expected"]
        floor = domain_floor(base, metric)
    floor = floor if metric.higher_is_better else base[metric.name]
    lift = relative_lift(best[metric.name], floor, metric)
    regression = max(0.0, relative_change(best["general_perplexity"], base["general_perplexity"]))
    failing = [t for t in record.trials if t.rungs[-1].get(Flag.VIOLATION)]
    share = len(failing) / max(len(record.trials), 1)
    return recommend(lift, regression, record.limit, share, record.stage, verdict_of(record))


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

    journal = RunDir(record.path).journal
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
    """The recipe's hyperparameters its method uses (its stage's dataclass holds only its own; LoRA's only for lora)."""
    unused = LORA_HYPERPARAMETERS if recipe["method"] != "lora" else frozenset()
    return {k: v for k, v in recipe["hyperparameters"].items() if k not in unused}


def figure_cell(metrics: dict[str, Any], key: str) -> str:
    """A figure with its 95% interval and sample size where the metrics hold them."""
    value = metrics.get(key)
    if value is None:
        return ""
    if not isinstance(value, float) or metrics.get(f"{key}_low") is None:
        return fmt(value)
    return figure_value(metrics, key, sample_size=True)


def metric_rows(keys: Sequence[str], *columns: dict[str, Any]) -> list[list[Any]]:
    """One row per figure (its interval columns folded into its cell)."""
    shown = [k for k in keys if not k.endswith(INTERVAL_SUFFIXES)]
    return [[k, *[figure_cell(c, k) for c in columns]] for k in shown if any(k in c for c in columns)]


def verdict_section(record: RunRecord) -> Section:
    """Learned or not and general ability held or not, with the evidence: the paired tests and, for a label
    task, chance on the test split."""
    verdict = verdict_of(record)
    tables = []
    scores = record.test_scores or {}
    paired = dict(scores.get("paired") or {})
    if scores.get("chance"):
        paired["domain, against the majority class"] = scores["chance"]["paired"]
    if paired and verdict is scores.get("verdict"):
        columns = ["compared", "test", "n", "best - base", "95% interval", "p, best better", "p, best worse"]
        rows = [
            [key, t["test"], t["n"], f"{t['difference']:+.4f}", f"{t['low']:+.3f} to {t['high']:+.3f}",
             p_text(t["p_better"]), p_text(t["p_worse"])]
            for key, t in paired.items()
        ]
        tables.append((columns, rows))
    if scores.get("chance"):
        chance = scores["chance"]
        rows = [[f"majority class ('{chance['majority_label']}')", chance["majority"]], ["uniform chance", chance["uniform"]]]
        tables.append((["guessing on the test split", "score"], rows))
    text = f"{verdict['headline']} {verdict['general_line']} Evidence: " + "; ".join(verdict["reasons"]) + "."
    return Section("Verdict", tuple(tables), text)


def sections(record: RunRecord, out: Path) -> list[Section]:
    advice = recommend_for(record)
    found = [
        Section("Recommendation", text=f"{advice.headline} {advice.advice}"),
        *([verdict_section(record)] if record.best is not None else []),
        Section("Baseline", ((["metric", "base model"], metric_rows(list(record.baseline), record.baseline)),)),
    ]
    if RunDir(record.path).read_state() != SweepState.FINISHED:  # the best so far, not the sweep's answer
        found.insert(0, Section("Partial", text=partial_line(RunDir(record.path))))
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
            where = f"test, {scores['examples']}" if scores["split"] else "benchmarks"
            header = ["metric", f"base ({where})", f"best ({where})"]
            tables.append((header, metric_rows(list(scores["base"]), scores["base"], scores["best"])))
        where = f"trial {trial.number if trial else '?'} ({expected['trial_id']}) at step {expected['step']}"
        text = f"Best rung: {where}, objective {expected['objective']:+.4f}. Recipe: best/recipe.yaml."
        found.append(Section("Best recipe", tuple(tables), text))
    found += plot_sections(record, out)
    columns, rows = record.final_table()
    found.append(Section("All trials", ((columns, rows),)))
    found.append(time_section(record))
    run = RunDir(record.path)
    dashboard = f"optuna-dashboard {run.journal}"
    wandb_dir = run.wandb
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
    out = RunDir(record.path).report
    out.mkdir(exist_ok=True)
    found = sections(record, out)
    page, summary = out / "index.html", out / "summary.md"
    page.write_text(render_html(record, found), encoding="utf-8")
    summary.write_text(render_markdown(record, found), encoding="utf-8")
    return page, summary
