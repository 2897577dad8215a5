"""Stage dpo beyond the contract test: its metric on the starting model, full-rank training against a frozen
start, refused rows, and SFT then DPO from the SFT adapter through the real CLI, down to `trl dpo --config`."""

import dataclasses
import importlib
import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from stage_fixtures import dpo as fixture

from hpo.config.sweep_file import load_sweep
from trainers.dpo import DPO, answer_logprobs, preference_probe
from trainers.models import load_base
from trainers.probes import load_probes


@pytest.fixture
def tiny_dpo(tiny):
    fixture.make(tiny)
    return tiny


def unpadded_logprob(model, tokenizer, prompt: str, answer: str) -> float:
    """log p(answer | prompt) from one unpadded forward pass over the chat-formatted pair, worked out here."""
    messages = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    whole = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": answer}], tokenize=False)
    ids = tokenizer(whole, add_special_tokens=False, return_tensors="pt")["input_ids"]
    start = len(tokenizer(head, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return float(sum(logprobs[i - 1, ids[0, i]] for i in range(start, ids.shape[1])))


def test_the_metric_is_defined_for_the_starting_model(tiny_dpo):
    """The start's implicit reward margin is 0 by definition; its likelihood ranking of a pair is not."""
    recipe = load_sweep(tiny_dpo / "sweep_dpo.yaml").recipe
    model, tokenizer = load_base(recipe.model)
    probes = load_probes(recipe, DPO.domain_probe)
    metrics, predictions = preference_probe(model, tokenizer, probes)
    n = len(probes.domain)
    assert metrics["preference_accuracy_n"] == n and len(predictions["scores"]) == n
    assert metrics["preference_accuracy_low"] <= metrics["preference_accuracy"] <= metrics["preference_accuracy_high"]
    row = probes.domain[0]
    chosen, rejected = (unpadded_logprob(model, tokenizer, row["prompt"], row[key]) for key in ("chosen", "rejected"))
    assert chosen < 0 and predictions["margins"][0] == pytest.approx(chosen - rejected, abs=1e-4)
    longer = "a much longer answer " * 4
    batched = answer_logprobs(model, tokenizer, [row["prompt"]] * 2, [row["chosen"], longer], None, 96)
    assert batched[0] == pytest.approx(chosen, abs=1e-4)  # the padding of a longer answer beside it changes nothing
    same = dataclasses.replace(probes, domain=[{**row, "rejected": row["chosen"]}])
    assert preference_probe(model, tokenizer, same)[0]["preference_accuracy"] == 0.0  # a tie is no preference


def test_full_rank_dpo_trains_every_weight_against_a_frozen_start(tiny_dpo):
    recipe = load_sweep(tiny_dpo / "sweep_dpo.yaml").recipe.with_hyperparameters({"learning_rate": 1e-3})
    training = dataclasses.replace(recipe.training, max_steps=2, rung_interval=2)
    recipe = dataclasses.replace(recipe, method="full", training=training)
    start, _ = load_base(recipe.model)
    seen = {}

    def report(step, metrics, checkpoint):
        from safetensors.torch import load_file

        seen.update(metrics=metrics, weights=load_file(checkpoint / "model.safetensors"))

    DPO.train(recipe, report)
    before = start.state_dict()
    changed = [name for name, value in seen["weights"].items() if not torch.equal(value, before[name])]
    assert len(changed) == len(seen["weights"])
    assert {"preference_accuracy", "train_reward_margin", "train_reward_accuracy"} <= set(seen["metrics"])


def test_pairs_without_a_rejected_answer_are_refused_naming_the_file_row_and_fix(tiny_dpo):
    train = tiny_dpo / "data" / "dpo_train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    del rows[2]["rejected"]
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "validate", "sweep_dpo.yaml"], cwd=tiny_dpo, capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {train}: data.domain_train: row 3: missing string field 'rejected' "
        "(each row needs prompt, chosen, rejected)"
    ]
    assert not (tiny_dpo / "runs").exists()


@pytest.fixture(scope="module")
def chained(tiny_source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sft-dpo") / "tiny"
    shutil.copytree(tiny_source, folder)
    fixture.make(folder)
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "sweep", "pipeline_sft_dpo.yaml", "--quiet"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (folder / "runs").iterdir()
    return run_dir


@pytest.mark.slow  # a minute for the SFT -> DPO pipeline; tests/test_pipeline.py chains stages by default
def test_dpo_starts_from_the_sft_adapter_and_records_its_metric_with_an_interval(chained):
    chain = yaml.safe_load((chained / "chain.yaml").read_text())
    sft, dpo = chain["stages"]
    assert (sft["stage"], dpo["stage"]) == ("sft", "dpo")
    assert dpo["started_from"]["adapters"] == [str(chained / "stages" / "sft" / "best" / "adapter")]
    rows = pq.read_table(chained / "stages" / "dpo" / "trials.parquet").to_pylist()
    assert len({r["trial_id"] for r in rows}) == 1 and rows[-1]["step"] == 4
    for column in ("preference_accuracy", "preference_accuracy_low", "preference_accuracy_high", "objective"):
        assert all(r[column] is not None for r in rows), column
    assert all(r["preference_accuracy_low"] <= r["preference_accuracy"] <= r["preference_accuracy_high"] for r in rows)
    baseline = json.loads((chained / "stages" / "dpo" / "baseline.json").read_text())["metrics"]
    assert 0.0 <= baseline["preference_accuracy"] <= 1.0  # the SFT model's preferences, the floor to beat


@pytest.mark.slow  # a minute for the SFT -> DPO pipeline; tests/test_pipeline.py chains stages by default
def test_trl_dpo_parses_the_exported_config(chained):
    from trainers.stages import load_recipe

    best = chained / "stages" / "dpo" / "best"
    recipe, _ = load_recipe(best / "recipe.yaml")
    parser = importlib.import_module("trl.scripts.dpo").make_parser(prog="trl dpo")
    cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true", "--bf16", "false"]
    _, training_args, model_args, dataset_args = parser.parse_args_and_config(
        ["--config", str(best / "trl_dpo_config.yaml"), *cpu]
    )
    assert training_args.beta == recipe.hyperparameters.beta
    assert training_args.learning_rate == recipe.hyperparameters.learning_rate
    assert model_args.use_peft and model_args.lora_r == recipe.hyperparameters.lora_rank
    (domain,) = dataset_args.datasets
    assert domain.data_files == recipe.data.domain_train
