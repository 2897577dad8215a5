"""Every registered stage through the same checks: config round trip, a tiny run that resumes like
the uninterrupted one, its trainer config and exports, and a registry entry that holds together.

A new stage registered in trainers.stages.STAGES fails here until it has a tiny sweep file
(hpo.tiny) and passes every check.
"""

import dataclasses
from pathlib import Path

import pytest

from hpo.config import BUILTIN_SPACES, load_sweep
from hpo.tool_configs import trl_kwargs
from trainers.probes import DOMAIN_PROBES
from trainers.recipe import Hyperparameters, load_recipe, recipe_from_dict, save_recipe
from trainers.stages import METHODS, STAGES

# The tiny sweep file of each stage (hpo.tiny) and the hyperparameters its short run trains with.
TINY_SWEEPS = {
    "sft": ("sweep.yaml", {"learning_rate": 1e-2}),
    "cpt": ("sweep_cpt.yaml", {"learning_rate": 1e-2, "lora_rank": 4, "lora_alpha": 8, "mixing_ratio": 0.7}),
    "rft": ("sweep_rft.yaml", {"learning_rate": 1e-2, "num_generations": 4, "lora_rank": 4, "lora_alpha": 8}),
}
# Compared between a run resumed from its first rung and the uninterrupted run, where the stage reports them.
RESUMED_METRICS = ("train_loss", "train_kl", "train_reward_mean", "general_perplexity", "instruction_nll", "tokens_seen")


def short_recipe(tiny: Path, stage: str):
    """The stage's tiny recipe over 8 steps with rungs at 4 and 8."""
    sweep, hyperparameters = TINY_SWEEPS[stage]
    recipe = load_sweep(tiny / sweep).recipe.with_hyperparameters(hyperparameters)
    return dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, max_steps=8, rung_interval=4))


def test_every_registered_stage_has_a_tiny_sweep():
    assert set(TINY_SWEEPS) == set(STAGES)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_the_registry_entry_holds_together(name):
    stage = STAGES[name]
    assert stage.name == name and stage.methods and set(stage.methods) <= set(METHODS)
    assert stage.probe in DOMAIN_PROBES
    for method, space in stage.spaces.items():
        assert method in stage.methods and (BUILTIN_SPACES / f"{space}.yaml").is_file()
    assert stage.own_hyperparameters <= {f.name for f in dataclasses.fields(Hyperparameters)}
    assert stage.rows_per_step(8, Hyperparameters()) > 0
    assert stage.trainer().main is not None and stage.trainer().train is not None


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_recipe_round_trips_through_plain_data_and_a_file(tiny, tmp_path, name):
    recipe = load_sweep(tiny / TINY_SWEEPS[name][0]).recipe
    assert recipe.stage == name
    assert recipe_from_dict(recipe.to_dict()) == recipe
    save_recipe(tmp_path / "recipe.yaml", recipe, expected={"step": 4})
    loaded, sections = load_recipe(tmp_path / "recipe.yaml")
    assert loaded == recipe and sections == {"expected": {"step": 4}}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_run_resumed_from_a_rung_checkpoint_ends_like_the_uninterrupted_run(tiny, interrupted_and_resumed, name):
    recipe = short_recipe(tiny, name)
    whole, resumed, first = interrupted_and_resumed(STAGES[name].trainer().train, recipe)
    assert sorted(whole) == [4, 8] and whole[8]["final"] == 1.0
    assert list(resumed) == [8] and resumed[8]["resumed_from_step"] == first == 4
    compared = [m for m in (*RESUMED_METRICS, recipe.domain_metric.name) if m in whole[8]]
    assert recipe.domain_metric.name in compared and "train_loss" in compared
    for metric in compared:
        assert resumed[8][metric] == pytest.approx(whole[8][metric], rel=1e-6), metric


@pytest.mark.parametrize("name", sorted(STAGES))
def test_the_trainer_config_and_its_export_carry_the_recipe(tiny, tmp_path, name):
    stage = STAGES[name]
    recipe = short_recipe(tiny, name)
    config = stage.trainer_config(recipe, tmp_path)
    assert config.learning_rate == recipe.hyperparameters.learning_rate and config.max_steps == 8
    assert config.per_device_train_batch_size == recipe.training.batch_size and config.seed == recipe.seed
    class_name, kwargs = trl_kwargs(recipe)
    assert class_name == type(config).__name__
    machine = {"output_dir": str(tmp_path), "use_cpu": config.use_cpu, "bf16": config.bf16}  # not the recipe's
    assert type(config)(**machine, **kwargs).to_dict() == config.to_dict()
