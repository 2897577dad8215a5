"""The best recipe's held-out check: test-split scores next to the base model's, and a confusion matrix.

The search only ever saw the validation split; these numbers are the ones to believe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from peft import PeftModel

from hpo.rundir import RunDir, write_json
from trainers.data import read_jsonl
from trainers.models import load_base
from trainers.probes import ProbeSet, choice_accuracy, domain_probe, load_probes
from trainers.recipe import load_recipe

UNPARSED = "(unparsed)"
GENERAL_METRICS = ("general_perplexity", "instruction_nll")


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


def evaluate_best(run_dir: Path) -> dict:
    """Score base model and best adapter on the test split; writes best/test_scores.json.

    Only the domain probe runs again, on the test split: the general probes are the same
    files the sweep scored, so their values come from baseline.json and the best rung. With
    `data.mmlu_probe`, both models also get `mmlu_accuracy`, a known benchmark next to them.
    """
    run = RunDir(run_dir)
    recipe, exported = load_recipe(run.recipe)
    if recipe.data.domain_test is None or not run.adapter.is_dir():
        return {}
    probes = load_probes(recipe, domain_split="test")
    model, tokenizer = load_base(recipe.model, recipe.start_adapters)
    mmlu = read_jsonl(recipe.data.mmlu_probe) if recipe.data.mmlu_probe else []
    base_domain, _ = held_out_scores(model, tokenizer, probes, mmlu)
    if recipe.method == "full":  # the checkpoint is the whole model
        tuned, _ = load_base(str(run.adapter))
    else:
        tuned = PeftModel.from_pretrained(model, str(run.adapter))
    best_domain, predictions = held_out_scores(tuned, tokenizer, probes, mmlu)
    baseline = run.read_baseline()["metrics"]
    scores = {
        "split": "test",
        "examples": len(probes.domain),
        "base": {**base_domain, **general_metrics(baseline)},
        "best": {**best_domain, **general_metrics(exported["expected"])},
        "confusion": confusion(predictions["expected"], predictions["predictions"], recipe.labels),
    }
    write_json(run.test_scores, scores)
    return scores


def held_out_scores(model, tokenizer, probes: ProbeSet, mmlu: list[dict]) -> tuple[dict[str, float], dict]:
    """The domain probe on the test split and, given MMLU rows, multiple-choice accuracy on them."""
    model.eval()
    metrics, predictions = domain_probe(model, tokenizer, probes)
    if mmlu:
        metrics["mmlu_accuracy"] = choice_accuracy(model, tokenizer, mmlu, probes.system_prompt)
    return metrics, predictions


def general_metrics(metrics: dict) -> dict[str, float]:
    """The general-capability probe values of a rung (or the baseline): the same probes on every split."""
    return {k: metrics[k] for k in GENERAL_METRICS if metrics.get(k) is not None}
