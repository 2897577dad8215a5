"""The held-out check: a candidate next to the base model on the test split, the general probes and
the benchmarks, compared pairwise, and a verdict.

The search only ever saw the validation split; these numbers are the ones to believe. Base
and candidate are scored on the same test rows, general passages and benchmark examples, so
each is compared pairwise (trainers.stats.paired_test); a label task also compares the
candidate with the majority class on the same rows and gets a confusion matrix. hpo.judge.verdict
turns it all into "learned" or "not learned" and "general ability held" or "regressed".

The same check serves a sweep's best recipe (`evaluate_best`, writing best/test_scores.json),
`hpo judge RUN --adapter/--model` (any model, against the run's base) and `hpo judge --test`
(answers made elsewhere, `compare`).

The base model's figures on the test split and the benchmarks are the same for every check over
the same model, files and settings: each part comes from hpo.run.baseline's cache when it was scored
before (`base_from_cache` in test_scores.json names the parts that did).
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hpo.judge.verdict import Judging, judge, judging_of
from hpo.results.rundir import RunDir, write_json, write_text
from hpo.run.baseline import cached, held_out_dir, held_out_key
from hpo.run.timing import HELD_OUT, note, phase
from trainers import stats
from trainers.harness import run_benchmark
from trainers.probes import ProbeSet, domain_probe, load_probes, passage_nll, response_nlls
from trainers.recipe import Recipe, corpus_metric
from trainers.stages import STAGES, DomainMetric, domain_metric, load_recipe
from trainers.stats import paired_test

log = logging.getLogger(__name__)
UNPARSED = "(unparsed)"

# A model's figures, its per-example scores (`domain`, each general probe, `benchmark_<task>`;
# higher is better) and the domain probe's predictions.
Scored = tuple[dict[str, Any], dict[str, list[float]], dict[str, Any]]
SCORED = ("metrics", "per_example", "predictions")  # a Scored as a cached document's keys


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


def general_scores(model, tokenizer, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The general probes' figures and each passage's (pair's) score: minus its NLL per token."""
    metrics: dict[str, float] = {}
    per_example: dict[str, list[float]] = {}
    measured = {
        corpus_metric(name): passage_nll(model, tokenizer, passages, probes.max_seq_len)
        for name, passages in probes.corpora.items()
    }
    for name, (sums, counts) in measured.items():
        metrics.update(stats.perplexity(sums, counts).columns(name))
        per_example[name] = [-s / n for s, n in zip(sums, counts)]
    if probes.instructions:
        sums, counts = response_nlls(model, tokenizer, probes.instructions, probes.max_seq_len, probes.system_prompt)
        metrics.update(stats.token_mean(sums, counts).columns("instruction_nll"))
        per_example["instruction_nll"] = [-s / n for s, n in zip(sums, counts)]
    return metrics, per_example


def figure_parts(model, tokenizer, recipe: Recipe, probes: ProbeSet, domain: bool) -> dict[str, Callable[[], Scored]]:
    """How each cacheable part of a model's held-out figures is scored: the test split ("domain", when
    `domain`), each benchmark ("benchmark_<task>")."""
    parts: dict[str, Callable[[], Scored]] = {}
    if domain:
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


def general_figures(model, tokenizer, probes: ProbeSet) -> Scored:
    return (*general_scores(model, tokenizer, probes), {})


def merged(parts: Iterable[Scored]) -> Scored:
    metrics: dict[str, Any] = {}
    per_example: dict[str, list[float]] = {}
    predictions: dict[str, Any] = {}
    for part_metrics, part_examples, part_predictions in parts:
        metrics.update(part_metrics)
        per_example.update(part_examples)
        predictions.update(part_predictions)
    return metrics, per_example, predictions


def score_model(model, tokenizer, recipe: Recipe, probes: ProbeSet, domain: bool = True) -> Scored:
    """One model's figures on the test split (when `domain`), the general probes and the benchmarks."""
    model.eval()
    parts = figure_parts(model, tokenizer, recipe, probes, domain).values()
    return merged([*(score() for score in parts), general_figures(model, tokenizer, probes)])


def as_document(score: Callable[[], Scored]) -> dict[str, Any]:
    return dict(zip(SCORED, score()))


def score_base(model, tokenizer, recipe: Recipe, probes: ProbeSet, domain: bool) -> tuple[Scored, list[str]]:
    """The base model's figures as `score_model` gives them, the test split and each benchmark read from
    the cache where the same model, files and settings were scored before; and the parts that were."""
    model.eval()
    parts, reused = [], []
    for part, score in figure_parts(model, tokenizer, recipe, probes, domain).items():
        document, hit = cached(held_out_dir(), held_out_key(recipe, part), functools.partial(as_document, score))
        parts.append(tuple(document[key] for key in SCORED))
        if hit:
            reused.append(part)
    parts.append(general_figures(model, tokenizer, probes))
    if reused:
        log.info("held-out check: the base model's %s reused from %s", part_names(reused), held_out_dir())
        note(HELD_OUT, f"the base model's {part_names(reused)} from the cache")
    return merged(parts), reused


def part_names(parts: Sequence[str]) -> str:
    """`domain` and `benchmark_<task>` parts as a reader names them: "test split, <task>"."""
    return ", ".join("test split" if part == "domain" else part.removeprefix("benchmark_") for part in parts)


def compare(
    metric: DomainMetric,
    candidate: str,
    base: Scored,
    best: Scored,
    rows: Sequence[dict[str, Any]] | None,
    chance: dict[str, Any] | None = None,
    labels: Sequence[str] = (),
) -> dict[str, Any]:
    """The held-out figures of base and candidate (best/test_scores.json without its verdict).

    `rows` are the test split's (None: no test split, only the general figures compare); a label
    task's `chance` (trainers.scorers.chance_scores on those rows) also compares the candidate with
    the majority class, and its `labels` count the candidate's confusion matrix.
    """
    scores = compare_scores(metric, candidate, base, best, len(rows) if rows is not None else None, chance or None)
    if chance and labels:
        predictions = best[2]
        scores["confusion"] = confusion(predictions["expected"], predictions["predictions"], labels)
    return scores


def compare_scores(
    metric: DomainMetric,
    candidate: str,
    base: Scored,
    best: Scored,
    examples: int | None,
    chance: dict[str, Any] | None,
) -> dict[str, Any]:
    """Figures and paired tests of base and candidate, from their per-example scores; `chance` (a label
    task's, trainers.scorers.chance_scores) adds the candidate against the majority class on the same rows."""
    (base_metrics, base_examples, _), (best_metrics, best_examples, _) = base, best
    scores: dict[str, Any] = {
        "split": "test" if examples is not None else None,
        "examples": examples or 0,
        "metric": metric.name,
        "candidate": candidate,
        "base": base_metrics,
        "best": best_metrics,
        "paired": {key: vars(paired_test(base_examples[key], best_examples[key])) for key in base_examples},
    }
    if chance is not None:
        majority = chance["majority_scores"]
        scores["chance"] = {
            **{k: v for k, v in chance.items() if k != "majority_scores"},
            "paired": vars(paired_test(majority, best_examples["domain"])),
        }
    return scores


def held_out_check(
    recipe: Recipe,
    candidate: str,
    load_candidate: Callable[[Any], Any],
    judging: Judging,
    validation: tuple[dict[str, Any], dict[str, float]] | None = None,
    answers_out: Path | None = None,
) -> dict[str, Any]:
    """Score the base model and a candidate (`load_candidate(base_model)`, which may wrap the base in
    place) on the test split, the general probes and the benchmarks; compare and judge.

    With `answers_out`, each model's answers to the test rows go to `base.jsonl` and
    `candidate.jsonl` there, one `{"completion": ...}` per row, in order: what `hpo judge --test`
    reads, to judge them again (another scorer, another min_lift) without the models."""
    from trainers.models import load_base  # torch and transformers: only when a model is scored

    stage = STAGES[recipe.stage]
    has_test = recipe.data.domain_test is not None
    probes = load_probes(recipe, stage.domain_probe, "test" if has_test else "eval")
    model, tokenizer = load_base(recipe.model, recipe.start_adapters)
    base, reused = score_base(model, tokenizer, recipe, probes, domain=has_test)
    best = score_model(load_candidate(model), tokenizer, recipe, probes, domain=has_test)
    chance = stage.chance(recipe, probes) if has_test else {}
    metric = domain_metric(recipe)
    scores = compare(metric, candidate, base, best, probes.domain if has_test else None, chance, recipe.labels)
    scores["base_from_cache"] = reused
    scores["verdict"] = judge(scores, metric, judging, validation).to_dict()
    if answers_out is not None and has_test and "predictions" in base[2]:
        write_answers(answers_out, {"base": base[2]["predictions"], "candidate": best[2]["predictions"]})
    return scores


def write_answers(folder: Path, answers: dict[str, list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, texts in answers.items():
        write_text(folder / f"{name}.jsonl", "".join(json.dumps({"completion": t}) + "\n" for t in texts))


def tuned_model(folder: Path, base_model):
    """A trained model: a LoRA adapter on the base (it wraps `base_model` in place), or a whole model
    (a full-rank run's best/adapter holds one)."""
    from peft import PeftModel

    from trainers.models import load_base

    if not (folder / "adapter_config.json").is_file():
        return load_base(str(folder))[0]
    return PeftModel.from_pretrained(base_model, str(folder))


@phase(HELD_OUT)
def evaluate_best(run_dir: Path) -> dict:
    """The held-out check of a sweep's best rung; writes best/test_scores.json.

    Without an adapter (nothing to load) this returns {} and writes nothing.
    """
    run = RunDir(run_dir)
    recipe, exported = load_recipe(run.recipe)
    if not run.adapter.is_dir():
        return {}
    validation = (exported["expected"], run.read_baseline()["metrics"])
    judging = judging_of(run.read_spec()["config"])
    scores = held_out_check(recipe, "the best recipe", lambda base: tuned_model(run.adapter, base), judging, validation)
    write_json(run.test_scores, scores)
    return scores
