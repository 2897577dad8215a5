"""The best recipe's final check: held-out test scores next to the base model's, benchmarks, and a verdict.

The search only ever saw the validation split; these numbers are the ones to believe. Base
and best are scored on the same test rows and the same benchmark examples, so they are
compared pairwise (trainers.stats.paired_test); a label task also gets the majority-class
and uniform-chance scores on the test split and a confusion matrix. The general probes are
the same files the sweep scored, so their values come from baseline.json and the best rung.
hpo.verdict turns it all into "learned" or "not learned". Writes best/test_scores.json.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peft import PeftModel

from hpo.rundir import RunDir, write_json
from hpo.timing import HELD_OUT, phase
from hpo.verdict import judge
from trainers.harness import run_benchmarks
from trainers.models import load_base
from trainers.probes import ProbeSet, domain_probe, load_probes
from trainers.recipe import Recipe, corpus_metric, load_recipe
from trainers.scorers import chance_scores
from trainers.stages import STAGES
from trainers.stats import paired_test

UNPARSED = "(unparsed)"
INTERVAL_SUFFIXES = ("", "_low", "_high", "_n")


def confusion(expected: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """Rows are true labels, columns predicted labels plus UNPARSED for answers outside the set."""
    counts = Counter((e, p if p in labels else UNPARSED) for e, p in zip(expected, predicted))
    columns = [*labels, UNPARSED]
    return {e: {p: counts[(e, p)] for p in columns} for e in labels}


def format_confusion(matrix: dict[str, dict[str, int]]) -> str:
    columns = list(next(iter(matrix.values())))
    width = max(len(c) for c in [*columns, *matrix]) + 1
    lines = ["true \\ predicted".ljust(width) + "".join(c.rjust(width) for c in columns)]
    lines += [label.ljust(width) + "".join(str(n).rjust(width) for n in row.values()) for label, row in matrix.items()]
    return "\n".join(lines)


def general_metrics(recipe: Recipe, metrics: dict[str, Any]) -> dict[str, float]:
    """The general probes' figures of a rung (or the baseline), intervals included."""
    names = ["general_perplexity", *(corpus_metric(c.name) for c in recipe.general.corpora), "instruction_nll"]
    return {f"{n}{s}": metrics[f"{n}{s}"] for n in names for s in INTERVAL_SUFFIXES if metrics.get(f"{n}{s}") is not None}


Scored = tuple[dict[str, Any], dict[str, list[float]], dict[str, Any]]


def score_model(model, tokenizer, recipe: Recipe, probes: ProbeSet | None) -> Scored:
    """One model's test-split domain figures and benchmark figures, the per-example scores of each
    (`domain`, `benchmark_<task>`) and the domain probe's predictions."""
    model.eval()
    metrics: dict[str, Any] = {}
    per_example: dict[str, list[float]] = {}
    predictions: dict[str, Any] = {}
    if probes is not None:
        metrics, predictions = domain_probe(model, tokenizer, probes)
        per_example["domain"] = predictions["scores"]
    for task, result in run_benchmarks(model, tokenizer, recipe.general.benchmarks, recipe.system_prompt).items():
        metrics.update(result["estimate"].columns(f"benchmark_{task}"))
        per_example[f"benchmark_{task}"] = result["scores"]
    return metrics, per_example, predictions


def tuned_model(recipe: Recipe, run: RunDir, base_model):
    """The best rung's model: the adapter on the base (it wraps `base_model` in place), or the whole model."""
    if recipe.method == "full":
        return load_base(str(run.adapter))[0]
    return PeftModel.from_pretrained(base_model, str(run.adapter))


@phase(HELD_OUT)
def evaluate_best(run_dir: Path) -> dict:
    """Score the base model and the best rung on the test split and the benchmarks; judge; write test_scores.json.

    Without an adapter (nothing to load) this returns {} and writes nothing.
    """
    run = RunDir(run_dir)
    recipe, exported = load_recipe(run.recipe)
    if not run.adapter.is_dir():
        return {}
    probes = load_probes(recipe, domain_split="test") if recipe.data.domain_test is not None else None
    model, tokenizer = load_base(recipe.model, recipe.start_adapters)
    base, base_examples, _ = score_model(model, tokenizer, recipe, probes)
    best, best_examples, predictions = score_model(tuned_model(recipe, run, model), tokenizer, recipe, probes)
    baseline = run.read_baseline()["metrics"]
    scores: dict[str, Any] = {
        "split": "test" if probes is not None else None,
        "examples": len(probes.domain) if probes is not None else 0,
        "metric": recipe.domain_metric.name,
        "base": {**base, **general_metrics(recipe, baseline)},
        "best": {**best, **general_metrics(recipe, exported["expected"])},
        "paired": {key: vars(paired_test(base_examples[key], best_examples[key])) for key in base_examples},
    }
    if probes is not None:
        scores["paired_test"] = scores["paired"]["domain"]
        scores.update(label_figures(recipe, probes, predictions))
    scores["verdict"] = judge(scores, exported["expected"], baseline, recipe.domain_metric).to_dict()
    write_json(run.test_scores, scores)
    return scores


def label_figures(recipe: Recipe, probes: ProbeSet, predictions: dict[str, Any]) -> dict[str, Any]:
    """A label task's chance scores on the test split and the best's confusion matrix."""
    if not (STAGES[recipe.stage].scores_answers and recipe.labels):
        return {}
    return {
        "chance": chance_scores(probes.scorer, probes.domain, recipe.labels),
        "confusion": confusion(predictions["expected"], predictions["predictions"], recipe.labels),
    }
