"""The best recipe's final check: held-out test scores next to the base model's, benchmarks, and a verdict.

The search only ever saw the validation split; these numbers are the ones to believe. Base
and best are scored on the same test rows and the same benchmark examples, so they are
compared pairwise (trainers.stats.paired_test); a label task also gets the majority-class
and uniform-chance scores on the test split and a confusion matrix. The general probes are
the same files the sweep scored, so their values come from baseline.json and the best rung.
hpo.verdict turns it all into "learned" or "not learned". Writes best/test_scores.json.

The base model's figures are the same for every sweep over the same model, test split and
benchmarks: each part comes from hpo.baseline's cache when it was scored before
(`base_from_cache` in test_scores.json names the parts that did).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from peft import PeftModel

from hpo.baseline import cached, held_out_dir, held_out_key
from hpo.rundir import RunDir, write_json
from hpo.timing import HELD_OUT, note, phase
from hpo.verdict import judge
from trainers.harness import run_benchmark
from trainers.models import load_base
from trainers.probes import ProbeSet, domain_probe, load_probes
from trainers.recipe import Recipe, corpus_metric
from trainers.shared import INTERVAL_SUFFIXES
from trainers.stages import STAGES, domain_metric, load_recipe
from trainers.stats import paired_test

log = logging.getLogger(__name__)
UNPARSED = "(unparsed)"


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
    return {f"{n}{s}": metrics[f"{n}{s}"] for n in names for s in ("", *INTERVAL_SUFFIXES) if metrics.get(f"{n}{s}") is not None}


Scored = tuple[dict[str, Any], dict[str, list[float]], dict[str, Any]]
SCORED = ("metrics", "per_example", "predictions")  # a Scored as a cached document's keys


def figure_parts(model, tokenizer, recipe: Recipe, probes: ProbeSet | None) -> dict[str, Callable[[], Scored]]:
    """How each part of a model's held-out figures is scored: the test split ("domain"), each benchmark."""
    parts: dict[str, Callable[[], Scored]] = {}
    if probes is not None:
        parts["domain"] = functools.partial(domain_figures, model, tokenizer, probes)
    for benchmark in recipe.general.benchmarks:
        figures = functools.partial(benchmark_figures, model, tokenizer, benchmark, recipe.system_prompt)
        parts[f"benchmark_{benchmark.task}"] = figures
    return parts


def domain_figures(model, tokenizer, probes: ProbeSet) -> Scored:
    metrics, predictions = domain_probe(model, tokenizer, probes)
    return metrics, {"domain": predictions["scores"]}, predictions


def benchmark_figures(model, tokenizer, benchmark, system_prompt: str | None) -> Scored:
    name, result = f"benchmark_{benchmark.task}", run_benchmark(model, tokenizer, benchmark, system_prompt)
    return result["estimate"].columns(name), {name: result["scores"]}, {}


def merged(parts: Iterable[Scored]) -> Scored:
    metrics: dict[str, Any] = {}
    per_example: dict[str, list[float]] = {}
    predictions: dict[str, Any] = {}
    for part_metrics, part_examples, part_predictions in parts:
        metrics.update(part_metrics)
        per_example.update(part_examples)
        predictions.update(part_predictions)
    return metrics, per_example, predictions


def score_model(model, tokenizer, recipe: Recipe, probes: ProbeSet | None) -> Scored:
    """One model's test-split domain figures and benchmark figures, the per-example scores of each
    (`domain`, `benchmark_<task>`) and the domain probe's predictions."""
    model.eval()
    return merged(score() for score in figure_parts(model, tokenizer, recipe, probes).values())


def as_document(score: Callable[[], Scored]) -> dict[str, Any]:
    return dict(zip(SCORED, score()))


def score_base(model, tokenizer, recipe: Recipe, probes: ProbeSet | None) -> tuple[Scored, list[str]]:
    """The base model's figures as `score_model` gives them, each part read from the cache where the
    same model, files and settings were scored before; and the parts that were."""
    model.eval()
    parts, reused = [], []
    for part, score in figure_parts(model, tokenizer, recipe, probes).items():
        document, hit = cached(held_out_dir(), held_out_key(recipe, part), functools.partial(as_document, score))
        parts.append(tuple(document[key] for key in SCORED))
        if hit:
            reused.append(part)
    return merged(parts), reused


def part_names(parts: Sequence[str]) -> str:
    """`domain` and `benchmark_<task>` parts as a reader names them: "test split, <task>"."""
    return ", ".join("test split" if part == "domain" else part.removeprefix("benchmark_") for part in parts)


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
    stage = STAGES[recipe.stage]
    probes = load_probes(recipe, stage.domain_probe, "test") if recipe.data.domain_test is not None else None
    model, tokenizer = load_base(recipe.model, recipe.start_adapters)
    (base, base_examples, _), reused = score_base(model, tokenizer, recipe, probes)
    if reused:
        log.info("held-out check: the base model's %s reused from %s", part_names(reused), held_out_dir())
        note(HELD_OUT, f"the base model's {part_names(reused)} from the cache")
    best, best_examples, predictions = score_model(tuned_model(recipe, run, model), tokenizer, recipe, probes)
    baseline = run.read_baseline()["metrics"]
    scores: dict[str, Any] = {
        "split": "test" if probes is not None else None,
        "examples": len(probes.domain) if probes is not None else 0,
        "metric": domain_metric(recipe).name,
        "base": {**base, **general_metrics(recipe, baseline)},
        "best": {**best, **general_metrics(recipe, exported["expected"])},
        "paired": {key: vars(paired_test(base_examples[key], best_examples[key])) for key in base_examples},
        "base_from_cache": reused,
    }
    if probes is not None:
        scores["paired_test"] = scores["paired"]["domain"]
        scores.update(label_figures(recipe, probes, predictions))
    scores["verdict"] = judge(scores, exported["expected"], baseline, domain_metric(recipe)).to_dict()
    write_json(run.test_scores, scores)
    return scores


def label_figures(recipe: Recipe, probes: ProbeSet, predictions: dict[str, Any]) -> dict[str, Any]:
    """A label task's chance scores on the test split and the best's confusion matrix."""
    chance = STAGES[recipe.stage].chance(recipe, probes)
    if not chance:
        return {}
    return {
        "chance": chance,
        "confusion": confusion(predictions["expected"], predictions["predictions"], recipe.labels),
    }
