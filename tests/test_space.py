from pathlib import Path

import optuna
import pytest

from hpo.config.errors import InputError
from hpo.search.space import load_space

ROOT = Path(__file__).resolve().parents[1]


def test_builtin_lora_space_maps_to_optuna_distributions():
    space = load_space(ROOT / "search_spaces" / "sft_lora.yaml")
    dists = space.distributions()
    assert dists["learning_rate"] == optuna.distributions.FloatDistribution(1e-6, 1e-4, log=True)
    assert dists["lora_rank"] == optuna.distributions.CategoricalDistribution((16, 32, 64))
    assert isinstance(dists["mixing_ratio"], optuna.distributions.FloatDistribution)


def test_builtin_lora_space_starts_from_the_published_defaults():
    defaults = load_space(ROOT / "search_spaces" / "sft_lora.yaml").defaults()
    assert defaults == {
        "learning_rate": 1e-5,
        "lora_rank": 32,
        "lora_alpha": 64,
        "lora_dropout": 0.05,
        "warmup_ratio": 0.15,
        "mixing_ratio": 0.5,
    }


def test_int_parameter_with_step(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "stage: sft\nmethod: lora\nparameters:\n  lora_rank: {type: int, low: 8, high: 64, step: 8, default: 32}\n"
    )
    dist = load_space(path).distributions()["lora_rank"]
    assert dist == optuna.distributions.IntDistribution(8, 64, step=8)


@pytest.mark.parametrize(
    "parameter, message",
    [
        (
            "learning_rate: {type: float, low: 0.0, high: 1.0e-4, log: true, default: 1.0e-5}",
            "must be > 0 for a log range",
        ),
        ("learning_rate: {type: float, low: 1.0e-3, high: 1.0e-4, default: 5.0e-4}", "`low <= high` must hold"),
        ("lora_rank: {type: int, low: 0, high: 8, default: 4}", "parameters.lora_rank.low: must be >= 1, got 0"),
        ("mixing_ratio: {type: float, low: 0.2, high: 1.5, default: 0.5}", "mixing_ratio.high: must be <= 1"),
        ("learning_rate: {type: float, low: 1.0e-6, high: 1.0e-4, default: 1.0}", "default: must lie in [low, high]"),
        ("lora_rnk: {type: choice, values: [8], default: 8}", "unknown key 'lora_rnk' (did you mean 'lora_rank'?)"),
        ("lora_rank: {type: choice, values: [8, 16], default: 32}", "must be one of the values"),
        ("lora_rank: {type: float, low: 1, high: 8, dflt: 4}", "unknown key 'dflt' (did you mean 'default'?)"),
    ],
)
def test_bad_parameters_name_the_file_the_key_and_the_fix(tmp_path, parameter, message):
    path = tmp_path / "space.yaml"
    path.write_text(f"stage: sft\nmethod: lora\nparameters:\n  {parameter}\n")
    with pytest.raises(InputError) as caught:
        load_space(path)
    assert any(str(path) in line and message in line for line in caught.value.problems), caught.value.problems
