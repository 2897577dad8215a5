"""The SFT trainer on the tiny model: LoRA weights really change, the loss goes down, and a run
resumed from a rung checkpoint ends where the uninterrupted run ends."""

import dataclasses
import json

import pytest
import yaml
from safetensors.torch import load_file

from hpo.config.sweep_file import load_sweep
from trainers.data import mix
from trainers.rungs import Diverged
from trainers.sft import train


def tiny_recipe(tiny, **hyperparameters):
    recipe = load_sweep(tiny / "sweep.yaml").recipe
    return recipe.with_hyperparameters({"lora_rank": 8, "lora_alpha": 16, **hyperparameters})


def test_training_changes_every_lora_weight_and_lowers_the_loss(tiny):
    recipe = tiny_recipe(tiny, learning_rate=1e-2, mixing_ratio=1.0, warmup_ratio=0.0)
    recipe = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, max_steps=24, rung_interval=4))
    rungs = []

    def report(step, metrics, checkpoint):
        weights = load_file(checkpoint / "adapter_model.safetensors")
        predictions = json.loads((checkpoint / "predictions.json").read_text())
        rungs.append((step, metrics, weights, predictions))

    final = train(recipe, report)
    assert [step for step, *_ in rungs] == [4, 8, 12, 16, 20, 24]
    first, last = rungs[0][2], rungs[-1][2]
    assert first.keys() == last.keys() and any("lora_B" in k for k in last)
    for name in last:
        assert not (first[name] == last[name]).all(), f"{name} did not change between rungs"
        if "lora_B" in name:  # PEFT starts B at zero
            assert last[name].abs().sum() > 0
    assert rungs[-1][1]["train_loss"] < rungs[0][1]["train_loss"]
    assert final["step"] == 24 and final["final"] == 1.0
    assert len(rungs[-1][3]["predictions"]) == recipe.probes.domain_examples


def test_stop_at_step_ends_early_on_the_same_schedule(tiny):
    recipe = tiny_recipe(tiny, learning_rate=3e-3)
    recipe = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, stop_at_step=8))
    steps = []
    final = train(recipe, lambda step, metrics, checkpoint: steps.append(step))
    assert steps == [4, 8]
    assert final["final"] == 1.0


def test_a_diverging_run_raises_with_its_step(tiny):
    from safetensors.torch import save_file

    weights_file = tiny / "model" / "model.safetensors"
    weights = load_file(weights_file)
    weights["model.norm.weight"][0] = float("inf")  # poisons every forward pass from the first step
    save_file(weights, weights_file)
    with pytest.raises(Diverged) as caught:
        train(tiny_recipe(tiny, learning_rate=1e-3), lambda *args: None)
    assert caught.value.step == 1 and caught.value.what == "loss"


def test_mixing_keeps_every_domain_row_at_the_requested_ratio():
    domain = [{"d": i} for i in range(30)]
    general = [{"g": i} for i in range(10)]
    mixed = mix(domain, general, 0.6, seed=0)
    assert sum("d" in r for r in mixed) == 30
    assert sum("g" in r for r in mixed) == 20  # 30 / 0.6 - 30, cycling the 10 general rows
    assert mix(domain, general, 1.0, seed=0) != domain  # shuffled
    assert sorted(r["d"] for r in mix(domain, general, 1.0, seed=0)) == list(range(30))


def test_the_task_system_prompt_reaches_training_probes_and_the_baseline_key(tiny):
    from hpo.run.baseline import baseline_key
    from trainers.models import load_base
    from trainers.probes import chat_prompt, load_probes
    from trainers.sft import SFT, training_rows

    document = yaml.safe_load((tiny / "sweep.yaml").read_text())
    document["task"]["system_prompt"] = "Answer tersely."
    (tiny / "system.yaml").write_text(yaml.safe_dump(document))
    plain, terse = load_sweep(tiny / "sweep.yaml").recipe, load_sweep(tiny / "system.yaml").recipe
    assert plain.system_prompt is None and terse.system_prompt == "Answer tersely."
    assert training_rows(plain)[0]["prompt"][0]["role"] == "user"
    assert training_rows(terse)[0]["prompt"][0] == {"role": "system", "content": "Answer tersely."}
    probes = load_probes(terse, SFT.domain_probe)
    _, tokenizer = load_base(terse.model)
    text = chat_prompt(tokenizer, probes.domain[0]["prompt"], probes.system_prompt)
    assert text.startswith("<|im_start|>system\nAnswer tersely.<|im_end|>\n<|im_start|>user\n")
    assert baseline_key(plain) != baseline_key(terse)  # a cached baseline is never reused across prompts


def test_a_probe_leaves_the_tokenizers_padding_side_as_it_found_it(tiny):
    from trainers.models import load_base
    from trainers.probes import generate_answers

    recipe = load_sweep(tiny / "sweep.yaml").recipe
    model, tokenizer = load_base(recipe.model)
    tokenizer.padding_side = "right"
    answers = generate_answers(model, tokenizer, ["a b", "a much longer prompt than the first"], max_new_tokens=2)
    assert len(answers) == 2 and all(isinstance(answer, str) for answer in answers)
    assert tokenizer.padding_side == "right"


def test_a_tokenizer_without_a_chat_template_is_refused_naming_the_model_once(tiny):
    from trainers.model_store import ModelError
    from trainers.models import load_base

    settings = tiny / "model" / "tokenizer_config.json"
    config = json.loads(settings.read_text())
    config.pop("chat_template", None)
    settings.write_text(json.dumps(config))
    (tiny / "model" / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ModelError) as info:
        load_base(str(tiny / "model"))
    message = str(info.value)
    assert message.startswith(f"'{tiny / 'model'}': tokenizer of ") and "no chat template" in message
    assert "model:" not in message  # the CLI adds "FILE: model: " in front


def test_the_benchmarks_score_the_last_rung_when_asked(tiny):
    from trainers.recipe import General

    recipe = load_sweep(tiny / "sweep.yaml").recipe
    general = General(benchmarks=recipe.general.benchmarks, benchmarks_each_trial=True)
    training = dataclasses.replace(recipe.training, max_steps=4, rung_interval=2)
    recipe = dataclasses.replace(recipe.with_hyperparameters({"learning_rate": 1e-2}), general=general, training=training)
    rungs = {}
    train(recipe, lambda step, metrics, checkpoint: rungs.update({step: metrics}))
    assert "benchmark_tiny_choice" not in rungs[2]  # only the last rung pays for the benchmark
    assert 0.0 <= rungs[4]["benchmark_tiny_choice"] <= 1.0 and rungs[4]["benchmark_tiny_choice_n"] == 20
