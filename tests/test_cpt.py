"""Continued pre-training on the tiny model: domain perplexity falls, and the objective scores its relative drop."""

import dataclasses
import math

import pytest
from safetensors.torch import load_file

from hpo.config.sweep_file import load_sweep
from hpo.run.baseline import measure_baseline
from hpo.search.objective import FAILING_OBJECTIVE, domain_lift, score
from trainers.cpt import train, trainer_config, training_rows
from trainers.stages import STAGES


def cpt_recipe(tiny, **hyperparameters):
    recipe = load_sweep(tiny / "sweep_cpt.yaml").recipe.with_hyperparameters(hyperparameters)
    return dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, max_steps=8, rung_interval=4))


def test_training_lowers_domain_perplexity_and_changes_every_lora_weight(tiny, tmp_path):
    recipe = cpt_recipe(tiny, learning_rate=1e-2, lora_rank=4, lora_alpha=8, mixing_ratio=0.7)
    rungs = []

    def report(step, metrics, checkpoint):
        rungs.append((step, metrics, load_file(checkpoint / "adapter_model.safetensors")))

    before = measure_baseline(load_sweep(tiny / "sweep_cpt.yaml").recipe)["metrics"]
    final = train(recipe, report)
    assert [step for step, *_ in rungs] == [4, 8] and final["final"] == 1.0
    assert final["domain_perplexity"] < rungs[0][1]["domain_perplexity"] < before["domain_perplexity"]
    assert math.isfinite(final["general_perplexity"])
    first, last = rungs[0][2], rungs[-1][2]
    for name in last:
        assert not (first[name] == last[name]).all(), f"{name} did not change between rungs"
    assert trainer_config(recipe, tmp_path).lr_scheduler_type == "cosine"  # warmup, then a cosine decay


def test_the_mix_is_raw_text_at_the_mixing_ratio(tiny):
    rows = training_rows(cpt_recipe(tiny, mixing_ratio=0.75))
    domain = sum(" kind of " in r["text"] or " word." in r["text"] or "Everyone" in r["text"] for r in rows)
    assert set(rows[0]) == {"text"}
    assert domain == 120 and len(rows) == 160  # 120 domain passages are 75% of the mix


def test_domain_lift_is_the_relative_drop_of_perplexity():
    metric = STAGES["cpt"].domain_metric(None)  # perplexity whatever the scorer
    assert domain_lift(10.0, 20.0, metric) == pytest.approx(0.5)  # perplexity halved
    assert domain_lift(30.0, 20.0, metric) == pytest.approx(-0.5)  # worse is negative
    base = {"domain_perplexity": 20.0, "general_perplexity": 10.0}
    result = score({"domain_perplexity": 10.0, "general_perplexity": 11.0}, base, 2.0, 0.5, domain=metric)
    assert result["objective"] == pytest.approx(0.5 - 2.0 * 0.1) and result["violation"] == ""
    failing = score({"domain_perplexity": math.inf, "general_perplexity": 11.0}, base, 1.0, None, domain=metric)
    assert failing["objective"] == FAILING_OBJECTIVE and failing["violation"] == "non-finite metric"
