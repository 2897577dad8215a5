"""Every stage and method through the edge: sweep files, search spaces, full-rank SFT, and the rerun dispatcher."""

import dataclasses
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hpo.cli import main
from hpo.config.errors import InputError
from hpo.config.pipeline_file import load_pipeline
from hpo.config.sweep_file import load_sweep
from hpo.search.space import load_space
from trainers.__main__ import main as rerun
from trainers.recipe import save_recipe
from trainers.sft import train
from trainers.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "space, defaults",
    [
        ("cpt", {"learning_rate": 1e-5, "lora_rank": 64, "lora_alpha": 128, "warmup_ratio": 0.1, "mixing_ratio": 0.5}),
        ("sft_full", {"learning_rate": 5e-6, "warmup_ratio": 0.1, "mixing_ratio": 0.5, "weight_decay": 0.0}),
        (
            "rft",
            {
                "learning_rate": 1e-5,
                "beta": 0.04,
                "num_generations": 4,
                "warmup_ratio": 0.1,
                "lora_rank": 16,
                "lora_alpha": 32,
            },
        ),
    ],
)
def test_builtin_stage_spaces_start_from_the_published_defaults(space, defaults):
    loaded = load_space(ROOT / "search_spaces" / f"{space}.yaml")
    assert loaded.defaults() == defaults
    low, high = next((p.low, p.high) for p in loaded.parameters if p.name == "learning_rate")
    assert (low, high) == (1e-6, 1e-4)  # the service's learning-rate range


@pytest.mark.parametrize("name", ["sweep_cpt", "sweep_rft", "sweep_sft_full", "pipeline"])
def test_every_stage_example_validates(tiny, name, capsys):
    assert main(["validate", str(tiny / f"{name}.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {tiny / name}.yaml: ")


def test_stage_defaults_pick_the_builtin_space(tiny):
    sweep = tiny / "sweep_rft.yaml"
    document = yaml.safe_load(sweep.read_text())
    del document["search_space"]
    sweep.write_text(yaml.safe_dump(document))
    config = load_sweep(sweep)
    assert Path(config.space.path).name == "rft.yaml"
    assert config.objective.max_kl == 2.0 and config.objective.min_length_ratio == 0.5


def edited(tiny, name: str, change) -> Path:
    sweep = tiny / f"{name}.yaml"
    document = yaml.safe_load(sweep.read_text())
    change(document)
    sweep.write_text(yaml.safe_dump(document))
    return sweep


CASES = {
    "rft without a reward": (
        "sweep_rft",
        lambda d: d["task"].pop("reward"),
        "task.reward: is required",
    ),
    "rft with a general mix": (
        "sweep_rft",
        lambda d: d["data"].update(general_mix="data/general_mix.jsonl"),
        "data.general_mix: stage rft trains on prompts alone",
    ),
    "rft full": ("sweep_rft", lambda d: d.update(method="full"), "method: stage rft supports lora, got 'full'"),
    "generations not dividing the batch": (
        "sweep_rft",
        lambda d: d["training"].update(batch_size=6),
        "training.batch_size: batch_size x grad_accum (6) must be divisible by every num_generations, got 4",
    ),
    "cpt with labels": ("sweep_cpt", lambda d: d.update(task={"labels": ["a"]}), "task.labels: unknown key 'labels'"),
    "cpt on prompt rows": (
        "sweep_cpt",
        lambda d: d["data"].update(domain_train="data/domain_train.jsonl"),
        "data.domain_train: row 1: missing string field 'text'",
    ),
    "an rft space on sft": (
        "sweep",
        lambda d: d.update(search_space="space_rft.yaml"),
        "space_rft.yaml: parameters.num_generations: only stage rft uses it",
    ),
    "kl limit on sft": (
        "sweep",
        lambda d: d["objective"].update(max_kl=0.5),
        "objective.max_kl: only stage rft uses it",
    ),
    "lora parameters in a full space": (
        "sweep_sft_full",
        lambda d: d.update(search_space="space.yaml"),
        "space.yaml is for sft/lora, the sweep is sft/full",
    ),
    "a start adapter that is not one": (
        "sweep_rft",
        lambda d: d.update(start_adapters=["data"]),
        "start_adapters[0]: no LoRA adapter at data",
    ),
    "no builtin space for full cpt": (
        "sweep_cpt",
        lambda d: (d.update(method="full"), d.pop("search_space")),
        "search_space: is required for cpt/full: no built-in space",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_stage_problems_name_the_key_and_the_fix(tiny, case):
    name, change, message = CASES[case]
    sweep = edited(tiny, name, change)
    with pytest.raises(InputError) as caught:
        load_sweep(sweep)
    assert any(message in line for line in caught.value.problems), caught.value.problems


def test_a_full_space_may_not_tune_lora_settings(tiny):
    space = tiny / "space_sft_full.yaml"
    document = yaml.safe_load(space.read_text())
    document["parameters"]["lora_rank"] = {"type": "choice", "values": [4, 8], "default": 4}
    space.write_text(yaml.safe_dump(document))
    with pytest.raises(InputError) as caught:
        load_sweep(tiny / "sweep_sft_full.yaml")
    assert any(
        "space_sft_full.yaml: parameters.lora_rank: method full trains no LoRA adapter" in p
        for p in caught.value.problems
    )


PIPELINE_CASES = {
    "unknown stage": (
        lambda d: d.update(stages=["sft", "warmstart"]),
        f"stages: must be a non-empty list of {', '.join(STAGES)}",
    ),
    "repeated stage": (lambda d: d.update(stages=["sft", "sft"]), "stages: must not repeat a stage"),
    "stage key": (lambda d: d.update(stage="sft"), "stage: is not allowed in a pipeline"),
    "pipeline-wide key in a stage": (lambda d: d["sft"].update(name="x"), "sft.name: is pipeline-wide"),
    "a stage's own problem": (
        lambda d: d["rft"]["task"]["reward"].update(callable="nowhere:f"),
        "[rft]: task.reward.callable: cannot import module 'nowhere'",
    ),
}


@pytest.mark.parametrize("case", sorted(PIPELINE_CASES))
def test_pipeline_problems_are_reported_before_anything_runs(tiny, case):
    change, message = PIPELINE_CASES[case]
    pipeline = edited(tiny, "pipeline", change)
    with pytest.raises(InputError) as caught:
        load_pipeline(pipeline)
    assert any(message in line for line in caught.value.problems), caught.value.problems


def test_full_rank_sft_trains_every_weight_and_saves_a_whole_model(tiny, tmp_path):
    recipe = load_sweep(tiny / "sweep_sft_full.yaml").recipe.with_hyperparameters({"learning_rate": 1e-3})
    recipe = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, max_steps=4, rung_interval=2))
    weights = []

    def report(step, metrics, checkpoint):
        weights.append(load_file(checkpoint / "model.safetensors"))
        if step == 4:  # the checkpoint is a model of its own: weights, config and tokenizer
            AutoModelForCausalLM.from_pretrained(checkpoint)
            AutoTokenizer.from_pretrained(checkpoint)

    final = train(recipe, report)
    assert final["final"] == 1.0 and len(weights) == 2
    changed = [name for name in weights[-1] if not (weights[0][name] == weights[-1][name]).all()]
    assert len(changed) == len(weights[-1]), set(weights[-1]) - set(changed)  # every weight trains, no adapter

    saved = tmp_path / "recipe.yaml"
    save_recipe(saved, recipe)
    assert rerun([str(saved), "--out", str(tmp_path / "rerun")]) == 0
    assert (tmp_path / "rerun" / "adapter" / "model.safetensors").is_file()


def test_the_rerun_dispatcher_refuses_what_it_cannot_run(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"recipe": {"stage": "warmstart"}}))
    assert rerun([str(recipe)]) == 2
    assert f"error: {recipe}: recipe.stage must be one of {', '.join(STAGES)}, got 'warmstart'" in capsys.readouterr().err
    assert rerun([str(tmp_path / "missing.yaml")]) == 2
