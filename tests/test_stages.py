"""Every registered stage through the same checks: a registry entry that holds together, its recipe's round
trip through plain data and a file, a tiny run that a resumed run and a standalone rerun both end like,
its trainer config, and its TRL export parsed by TRL's own command-line parser.

A new stage registered in trainers.stages.STAGES fails here until it has a fixture in
tests/stage_fixtures/<name>.py (its tiny sweep, see the README there) and passes every check.
"""

import dataclasses
import importlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from hpo.config.sweep_file import BUILTIN_SPACES, load_sweep
from hpo.results.tool_configs import TRL_CLI_UNREADABLE, trl_config, trl_kwargs
from hpo.search.space import load_space
from trainers.recipe import Hyperparameters, limits_of, save_recipe
from trainers.shared import DomainMetric, Scoring
from trainers.stages import METHODS, STAGES, domain_metric, load_recipe, recipe_from_dict

FIXTURES = Path(__file__).parent / "stage_fixtures"
# Compared between the uninterrupted run and the runs that resume or rerun it, where the stage reports them.
COMPARED = ("train_loss", "general_perplexity", "instruction_nll", "tokens_seen")
WINDOW_METRICS = ("train_kl", "train_reward_mean", "train_reward_margin", "train_reward_accuracy")


def fixture(name: str):
    return importlib.import_module(f"stage_fixtures.{name}")


def short_recipe(tiny: Path, stage: str):
    """The stage's tiny recipe over 8 steps with rungs at 4 and 8."""
    stage_fixture = fixture(stage)
    recipe = load_sweep(stage_fixture.make(tiny)).recipe.with_hyperparameters(stage_fixture.SHORT_RUN)
    return dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, max_steps=8, rung_interval=4))


def test_every_registered_stage_has_a_fixture():
    assert {path.stem for path in FIXTURES.glob("*.py")} == set(STAGES)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_the_registry_entry_holds_together(name):
    stage = STAGES[name]
    assert stage.name == name and stage.methods and set(stage.methods) <= set(METHODS)
    for method in stage.methods:
        space = stage.builtin_space(method)
        if space is not None:
            loaded = load_space(BUILTIN_SPACES / f"{space}.yaml")
            assert (loaded.stage, loaded.method) == (name, method)
            assert set(loaded.defaults()) <= {f.name for f in dataclasses.fields(stage.hyperparameters)} | {
                "effective_batch",
                "gradient_checkpointing",
                "packing",
                "load_in_4bit",
            }
    defaults = stage.hyperparameters()
    assert isinstance(defaults, Hyperparameters)
    for field, (low, high, low_open) in limits_of(stage.hyperparameters).items():
        value = getattr(defaults, field, None)
        assert value is None or (low < value if low_open else low <= value) and value <= high, field
    assert stage.rows_per_step(8, defaults) > 0
    assert isinstance(stage.domain_metric(Scoring(scorer="exact_match")), DomainMetric)
    assert stage.scale_up  # the report's next step after a clear win


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_recipe_round_trips_through_plain_data_and_a_file(tiny, tmp_path, name):
    recipe = load_sweep(fixture(name).make(tiny)).recipe
    assert recipe.stage == name and type(recipe.hyperparameters) is STAGES[name].hyperparameters
    assert recipe_from_dict(recipe.to_dict()) == recipe
    save_recipe(tmp_path / "recipe.yaml", recipe, expected={"step": 4})
    loaded, sections = load_recipe(tmp_path / "recipe.yaml")
    assert loaded == recipe and sections == {"expected": {"step": 4}}


@pytest.fixture(scope="module", params=sorted(STAGES))
def three_runs(request, tiny_source, tmp_path_factory):
    """One stage's short recipe trained whole; again from its first rung's checkpoint; and rerun standalone
    (`python -m trainers recipe.yaml`) to its first rung. Returns (recipe, whole, resumed, standalone)."""
    from trainers.__main__ import main as rerun
    from trainers.checkpoints import is_complete

    name = request.param
    folder = tmp_path_factory.mktemp(f"stage-{name}")
    tiny = folder / "tiny"
    shutil.copytree(tiny_source, tiny)
    recipe = short_recipe(tiny, name)
    stage = STAGES[name]
    whole = {}

    def report(step, metrics, checkpoint):
        assert is_complete(checkpoint)
        shutil.copytree(checkpoint, folder / str(step))
        whole[step] = metrics

    stage.train(recipe, report)
    resumed = {}
    stage.train(recipe, lambda step, metrics, checkpoint: resumed.update({step: metrics}), resume_from=folder / "4")
    first_rung = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, stop_at_step=4))
    save_recipe(folder / "recipe.yaml", first_rung)
    assert rerun([str(folder / "recipe.yaml"), "--out", str(folder / "rerun")]) == 0
    standalone = json.loads((folder / "rerun" / "metrics.json").read_text())
    assert (folder / "rerun" / "adapter").is_dir()
    return recipe, whole, resumed, standalone


def compared(recipe, metrics):
    names = [*COMPARED, *WINDOW_METRICS, domain_metric(recipe).name]
    return [name for name in names if name in metrics]


def test_a_run_resumed_from_a_rung_checkpoint_ends_like_the_uninterrupted_run(three_runs):
    recipe, whole, resumed, _ = three_runs
    assert sorted(whole) == [4, 8] and whole[8]["final"] == 1.0
    assert list(resumed) == [8] and resumed[8]["resumed_from_step"] == 4
    names = compared(recipe, whole[8])
    assert domain_metric(recipe).name in names and "train_loss" in names
    assert f"{domain_metric(recipe).name}_low" in whole[8]  # every domain figure comes with its interval
    for metric in names:
        assert resumed[8][metric] == pytest.approx(whole[8][metric], rel=1e-6), metric


def test_a_standalone_rerun_of_the_recipe_reproduces_its_rung(three_runs):
    recipe, whole, _, standalone = three_runs
    assert standalone["step"] == 4 and standalone["final"] == 1.0
    for metric in compared(recipe, whole[4]):
        assert standalone[metric] == pytest.approx(whole[4][metric], rel=1e-5), metric


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


@pytest.mark.parametrize("name", sorted(STAGES))
def test_the_trl_export_is_parsed_by_trls_own_command(tiny, tmp_path, name):
    """`trl <script> --config best/trl_<script>_config.yaml` reads every key into the config the stage trains with."""
    import torch

    recipe = short_recipe(tiny, name)
    script, document = trl_config(recipe)
    path = tmp_path / f"trl_{script}_config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    parser = importlib.import_module(f"trl.scripts.{script}").make_parser(prog=f"trl {script}")
    cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true", "--bf16", "false"]
    training_args = parser.parse_args_and_config(["--config", str(path), *cpu])[1]
    ours = STAGES[name].trainer_config(recipe, tmp_path)
    machine = {"output_dir", "use_cpu", "bf16", "fp16", "logging_dir", *TRL_CLI_UNREADABLE}
    assert type(training_args) is type(ours)
    assert {k: v for k, v in training_args.to_dict().items() if k not in machine} == {
        k: v for k, v in ours.to_dict().items() if k not in machine
    }
