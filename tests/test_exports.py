"""`hpo export`: every export file's contents, checked against the trainers' own configs and the record."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hpo.results.analysis import pareto_front
from hpo.results.tool_configs import Limit, service_hyperparameters
from trainers.recipe import DataPaths, MixedHyperparameters, Recipe, Training
from trainers.stages import load_recipe


def recipe_with(learning_rate: float, lora_rank: int, steps: int, warmup_ratio: float = 0.1) -> Recipe:
    return Recipe(
        stage="sft",
        method="lora",
        model="m",
        data=DataPaths("train.jsonl", "eval.jsonl", "mix.jsonl", "probe.jsonl"),
        labels=("a", "b"),
        hyperparameters=MixedHyperparameters(
            learning_rate=learning_rate, lora_rank=lora_rank, lora_alpha=32, warmup_ratio=warmup_ratio, mixing_ratio=0.5
        ),
        training=Training(batch_size=8, grad_accum=2, max_steps=steps),
    )


def test_limits_are_ranges_or_value_sets():
    assert Limit(1, 5).allows(1) and Limit(1, 5).allows(5) and not Limit(1, 5).allows(5.5)
    assert Limit(values=(8, 16)).allows(16) and not Limit(values=(8, 16)).allows(12)
    assert Limit(1e-6, 1e-4).describe() == "1e-06..0.0001"


def test_service_values_inside_the_limits_pass_without_warnings():
    # 100 steps x 16 rows x 0.5 domain share / 400 domain examples = 2 epochs
    document = service_hyperparameters(recipe_with(2e-5, 16, steps=100), examples=400)
    assert document["bedrock"]["hyperParameters"] == {
        "epochCount": "2",
        "learningRate": "2e-05",
        "learningRateWarmupSteps": "10",
    }
    assert document["lora"]["hyperparameters"] == {"lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.05}
    assert document["warnings"] == [] and all(c["ok"] for c in document["checks"])
    assert document["derivation"]["epochs"] == 2.0


def test_out_of_range_values_are_flagged_with_the_allowed_range_and_never_clamped():
    # 1000 steps x 8 domain rows / 400 examples = 20 epochs; warmup 0.2 x 1000 = 200 steps; rank 4 not offered
    document = service_hyperparameters(recipe_with(3e-3, 4, steps=1000, warmup_ratio=0.2), examples=400)
    request = document["bedrock"]["hyperParameters"]
    assert request == {"epochCount": "20", "learningRate": "0.003", "learningRateWarmupSteps": "200"}  # as measured
    flagged = {c["name"]: c for c in document["checks"] if not c["ok"]}
    assert set(flagged) == {"epochCount", "learningRate", "learningRateWarmupSteps", "lora_rank"}
    assert flagged["learningRate"]["allowed"] == "1e-06..0.0001"
    assert flagged["lora_rank"]["allowed"] == "one of 8, 16, 32, 64, 128"
    assert any("learningRate 0.003 is outside" in w and "1e-06..0.0001" in w for w in document["warnings"])
    assert all(c["source"].startswith("https://docs.aws.amazon.com/") for c in document["checks"])


def test_full_fine_tuning_has_no_lora_section():
    recipe = dataclasses.replace(recipe_with(2e-5, 16, steps=100), method="full")
    document = service_hyperparameters(recipe, examples=400)
    assert "lora" not in document and {c["name"] for c in document["checks"]} == set(
        ["epochCount", "learningRate", "learningRateWarmupSteps"]
    )


# --- the exports of a real sweep ------------------------------------------------------------------


def test_exports_are_written_by_the_sweep_itself(tiny_run):
    # first in this module: before `exported` runs `hpo export` again
    names = {p.name for p in Path(tiny_run / "best").iterdir()}
    assert names >= {
        "trl_sft_config.yaml",
        "peft_lora_config.json",
        "service_hyperparameters.json",
        "alternatives.json",
    }


@pytest.fixture(scope="module")
def exported(tiny_run):
    """`hpo export` of the session's sweep, after the sweep itself exported: it rewrites the same recipe."""
    best = tiny_run / "best"
    written_by_the_sweep = (best / "recipe.yaml").read_text()
    done = subprocess.run([sys.executable, "-m", "hpo", "export", str(tiny_run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(best / "recipe.yaml")
    assert (best / "recipe.yaml").read_text() == written_by_the_sweep
    recipe, sections = load_recipe(best / "recipe.yaml")
    return best, recipe, sections, done


def test_every_export_records_the_recipes_provenance(exported):
    best, _, sections, _ = exported
    provenance = sections["provenance"]
    assert set(provenance) >= {"spec_hash", "data_sha256", "seed", "trial_id", "step"}
    comment = [line for line in (best / "trl_sft_config.yaml").read_text().splitlines() if line.startswith("# ")]
    assert f"# provenance: {json.dumps(provenance, sort_keys=True)}" in comment  # TRL's file may hold only its keys
    for name in ("service_hyperparameters.json", "alternatives.json"):
        assert json.loads((best / name).read_text())["provenance"] == provenance, name


def parse_with_trl(config: Path, script: str = "sft"):
    """What `trl <script> --config FILE` parses the file into, with TRL's own parser; unknown keys fail.
    Without a GPU, the flags the file's header names for a CPU are added, as a user there would."""
    import importlib

    import torch

    parser = importlib.import_module(f"trl.scripts.{script}").make_parser(prog=f"trl {script}")
    cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true", "--bf16", "false"]
    return parser.parse_args_and_config(["--config", str(config), *cpu])


def test_trl_sft_loads_the_exported_config(exported, tmp_path):
    """best/trl_sft_config.yaml nested TRL's arguments under `kwargs` with other keys beside them,
    so `trl sft --config` refused it, and the LoRA settings were only in a separate JSON."""
    from peft import LoraConfig
    from trl import get_peft_config

    from trainers.rungs import lora_config
    from trainers.sft import trainer_config

    best, recipe, _, _ = exported
    script_args, training_args, model_args, dataset_args = parse_with_trl(best / "trl_sft_config.yaml")
    ours = trainer_config(recipe, tmp_path)
    from hpo.results.tool_configs import TRL_CLI_UNREADABLE

    machine = {"output_dir", "use_cpu", "bf16", "fp16", "logging_dir", *TRL_CLI_UNREADABLE}
    assert {k: v for k, v in training_args.to_dict().items() if k not in machine} == {
        k: v for k, v in ours.to_dict().items() if k not in machine
    }
    assert training_args.learning_rate == recipe.hyperparameters.learning_rate
    assert training_args.completion_only_loss is True and training_args.seed == recipe.seed
    assert Path(model_args.model_name_or_path) == Path(recipe.model)  # the tiny model is a local folder
    assert model_args.use_peft and model_args.lora_r == recipe.hyperparameters.lora_rank
    assert get_peft_config(model_args).to_dict() == LoraConfig(**lora_config(recipe).to_dict()).to_dict()
    domain, general = dataset_args.datasets
    assert (domain.path, domain.data_files) == ("json", recipe.data.domain_train)
    assert general.data_files == recipe.data.general_mix
    assert domain.fraction == pytest.approx(recipe.hyperparameters.mixing_ratio)
    assert script_args.dataset_name is None


def test_peft_config_loads_into_lora_config(exported):
    from peft import LoraConfig

    from trainers.rungs import lora_config

    best, recipe, _, _ = exported
    kwargs = json.loads((best / "peft_lora_config.json").read_text())
    assert LoraConfig(**kwargs).to_dict() == lora_config(recipe).to_dict()
    assert kwargs["r"] == recipe.hyperparameters.lora_rank and kwargs["lora_alpha"] == recipe.hyperparameters.lora_alpha


def test_service_hyperparameters_describe_the_best_recipe(exported):
    best, recipe, _, done = exported
    document = json.loads((best / "service_hyperparameters.json").read_text())
    request = document["bedrock"]["hyperParameters"]
    assert float(request["learningRate"]) == pytest.approx(recipe.hyperparameters.learning_rate, rel=1e-5)
    assert set(request) == {"epochCount", "learningRate", "learningRateWarmupSteps"}
    # the tiny space's learning rates (1e-4..0.5) are far above the service's 1e-4: flagged, on stderr too
    learning_rate = next(c for c in document["checks"] if c["name"] == "learningRate")
    assert learning_rate["ok"] is (recipe.hyperparameters.learning_rate <= 1e-4)
    for warning in document["warnings"]:
        assert f"warning: {warning}" in done.stderr
    assert done.stdout.strip() == str(best / "recipe.yaml")


def test_alternatives_are_the_top_trials_and_the_pareto_front(exported, tiny_run):
    best, _, sections, _ = exported
    document = json.loads((best / "alternatives.json").read_text())
    rows = pq.read_table(tiny_run / "trials.parquet").to_pylist()
    per_trial = {}
    for row in rows:
        per_trial[row["trial_id"]] = max(per_trial.get(row["trial_id"], -99.0), row["objective"])
    top = document["top_k"]
    assert [t["objective"] for t in top] == sorted(per_trial.values(), reverse=True)[: len(top)]
    assert len({t["trial_id"] for t in top}) == len(top) == min(5, len(per_trial))  # distinct trials
    assert top[0]["trial_id"] == sections["provenance"]["trial_id"]
    assert set(top[0]["params"]) >= {"learning_rate", "lora_rank"} and "domain_exact_match" in top[0]["metrics"]
    feasible = [r for r in rows if not r["violation"]]
    front = {
        (feasible[i]["trial_id"], feasible[i]["step"])
        for i in pareto_front([(r["domain_lift"], r["general_regression"]) for r in feasible])
    }
    assert {(p["trial_id"], p["step"]) for p in document["pareto"]} == front
    assert all(p["general_regression"] <= document["objective"]["max_general_regression"] for p in document["pareto"])
