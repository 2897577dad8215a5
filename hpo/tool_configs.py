"""The best recipe in the formats people deploy with, written next to best/recipe.yaml.

    best/trl_<method>_config.yaml     TRL config keyword arguments (SFTConfig for sft and cpt, GRPOConfig for rft)
    best/peft_lora_config.json        PEFT LoraConfig keyword arguments (method lora)
    best/service_hyperparameters.json service-style names and limits, out-of-range values flagged
    best/alternatives.json            the top trials and the lift/regression Pareto front

The TRL and PEFT arguments come from the trainers' own config builders, so they are
equivalent to the recipe by construction. Every file carries the recipe's provenance
(spec hash, data hashes, seed, trial id, step). Values outside a service's range are
flagged with the allowed range and never clamped: a silently changed learning rate is a
different recipe from the one the sweep measured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpo.analysis import RunRecord, load_run, pareto_rungs, ranked_trials
from hpo.errors import InputError
from hpo.guardrails import SERVICE_LIMITS, service_values
from hpo.rundir import RunDir, write_json, write_text
from trainers.data import read_jsonl
from trainers.recipe import Recipe, load_recipe
from trainers.stages import STAGES

TOP_K = 5
SCORES = ("objective", "domain_lift", "general_regression", "general_change")
# Set by the machine that trains, not by the recipe.
MACHINE_KEYS = frozenset({"output_dir", "use_cpu", "bf16", "fp16"})
# Shown even at their library defaults: everything the trainers set explicitly (some defaults,
# e.g. disable_tqdm, depend on the environment of the process that builds the config).
ALWAYS_SHOWN = (
    "max_steps",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "completion_only_loss",
    "dataset_text_field",
    "beta",
    "num_generations",
    "max_completion_length",
    "temperature",
    "gradient_checkpointing",
    "seed",
    "data_seed",
    "logging_steps",
    "logging_nan_inf_filter",
    "save_strategy",
    "report_to",
    "disable_tqdm",
    "dataloader_num_workers",
    "include_num_input_tokens_seen",
)
LORA_SHOWN = ("r", "lora_alpha", "lora_dropout", "target_modules", "task_type")

# Amazon Bedrock model customization for Amazon Nova Micro / Lite / Pro: CreateModelCustomizationJob
# `hyperParameters` (string values) epochCount 1-5, learningRate 1e-6-1e-4, learningRateWarmupSteps 0-100,
# https://docs.aws.amazon.com/bedrock/latest/userguide/cm-hp-nova-mm.html (hpo.guardrails.SERVICE_LIMITS).
BEDROCK_SERVICE = "Amazon Bedrock model customization (Amazon Nova Micro, Lite, Pro)"
BEDROCK_SOURCE = "https://docs.aws.amazon.com/bedrock/latest/userguide/cm-hp-nova-mm.html"
BEDROCK_NAMES = {"epochs": "epochCount", "learning_rate": "learningRate", "warmup_steps": "learningRateWarmupSteps"}
# LoRA settings where the service exposes them: SageMaker AI model customization (the Nova
# recipes path), https://docs.aws.amazon.com/sagemaker/latest/dg/customizing-models-lora.html
LORA_SERVICE = "Amazon SageMaker AI model customization, LoRA"
LORA_SOURCE = "https://docs.aws.amazon.com/sagemaker/latest/dg/customizing-models-lora.html"


@dataclass(frozen=True)
class Limit:
    """What a service accepts for one hyperparameter: a closed range, or a set of values."""

    low: float | None = None
    high: float | None = None
    values: tuple[float, ...] = ()

    def allows(self, value: float) -> bool:
        if self.values:
            return value in self.values
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def describe(self) -> str:
        if self.values:
            return "one of " + ", ".join(f"{v:g}" for v in self.values)
        return f"{self.low:g}..{self.high:g}"


BEDROCK_LIMITS = {BEDROCK_NAMES[name]: Limit(low, high) for name, (low, high) in SERVICE_LIMITS.items()}
LORA_LIMITS = {
    "lora_rank": Limit(values=(8, 16, 32, 64, 128)),
    "lora_alpha": Limit(values=(16, 32, 64, 128, 256)),
    "lora_dropout": Limit(0.0, 1.0),
}


# --- TRL and PEFT -------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """YAML/JSON-friendly: sets become sorted lists."""
    return sorted(value) if isinstance(value, (set, frozenset)) else value


def non_default(values: Mapping[str, Any], defaults: Mapping[str, Any], shown: tuple[str, ...]) -> dict[str, Any]:
    """The entries that differ from the library's defaults, plus the `shown` ones (machine keys left out)."""
    return {
        k: plain(v)
        for k, v in values.items()
        if k not in MACHINE_KEYS and ((k in shown and v is not None) or k not in defaults or defaults[k] != v)
    }


def trainer_config(recipe: Recipe, output_dir: Path = Path("output")):
    """The TRL config object the stage's trainer builds for this recipe."""
    return STAGES[recipe.stage].trainer_config(recipe, output_dir)


def trl_kwargs(recipe: Recipe) -> tuple[str, dict[str, Any]]:
    """(config class name, keyword arguments) equivalent to the recipe's trainer config."""
    args = trainer_config(recipe)
    cls = type(args)
    defaults = cls(output_dir=args.output_dir, use_cpu=args.use_cpu, bf16=args.bf16).to_dict()
    return cls.__name__, non_default(args.to_dict(), defaults, ALWAYS_SHOWN)


def lora_kwargs(recipe: Recipe) -> dict[str, Any] | None:
    """LoraConfig keyword arguments of the recipe's adapter; None when every weight trains."""
    from peft import LoraConfig

    from trainers.rungs import adapter_config

    config = adapter_config(recipe)
    if config is None:
        return None
    return non_default(config.to_dict(), LoraConfig().to_dict(), LORA_SHOWN)


# --- service-style hyperparameters ----------------------------------------------------------


def check(name: str, value: float, limit: Limit, source: str) -> dict[str, Any]:
    ok = limit.allows(value)
    entry: dict[str, Any] = {"name": name, "value": value, "allowed": limit.describe(), "ok": ok, "source": source}
    if not ok:
        entry["warning"] = (
            f"{name} {value:g} is outside what the service accepts ({limit.describe()}); "
            "kept as measured (not clamped): change the recipe or sweep a service-compatible space"
        )
    return entry


def service_hyperparameters(recipe: Recipe, examples: int) -> dict[str, Any]:
    """The recipe under Bedrock's names and, for LoRA, SageMaker's LoRA names; every value checked.

    Epochs are passes over the domain training rows (`examples`): optimizer steps times the
    domain rows per step (batch x grad accumulation x the domain share of the mix, i.e. the
    whole mix size is examples / mixing_ratio). Bedrock counts whole epochs, so epochCount
    is rounded; the check is on the measured value.
    """
    measured = service_values(recipe, examples)
    bedrock = {BEDROCK_NAMES[k]: v for k, v in measured.items()}
    checks = [check(k, v, BEDROCK_LIMITS[k], BEDROCK_SOURCE) for k, v in bedrock.items()]
    request = {**bedrock, "epochCount": round(bedrock["epochCount"])}
    document: dict[str, Any] = {
        "bedrock": {
            "service": BEDROCK_SERVICE,
            "source": BEDROCK_SOURCE,
            "hyperParameters": {k: f"{v:g}" for k, v in request.items()},
        }
    }
    if recipe.method == "lora":
        hp = recipe.hyperparameters
        lora = {"lora_rank": hp.lora_rank, "lora_alpha": hp.lora_alpha, "lora_dropout": hp.lora_dropout}
        checks += [check(k, v, LORA_LIMITS[k], LORA_SOURCE) for k, v in lora.items()]
        document["lora"] = {"service": LORA_SERVICE, "source": LORA_SOURCE, "hyperparameters": lora}
    training = recipe.training
    document["checks"] = checks
    document["warnings"] = [c["warning"] for c in checks if not c["ok"]]
    document["derivation"] = {
        "domain_examples": examples,
        "steps": training.last_step,
        "examples_per_step": training.rows_per_step(),
        "epochs": measured["epochs"],
        "warmup": f"warmup_ratio {recipe.hyperparameters.warmup_ratio:g} of a {training.max_steps}-step schedule; "
        "a service with another batch size warms up over a different share of training",
    }
    return document


# --- alternatives -----------------------------------------------------------------------------


def alternative(record: RunRecord, row: dict[str, Any]) -> dict[str, Any]:
    trial = next(t for t in record.trials if t.trial_id == row["trial_id"])
    return {
        "trial": trial.number,
        "trial_id": row["trial_id"],
        "step": int(row["step"]),
        "status": trial.status,
        "params": trial.params,
        **{k: row.get(k) for k in SCORES},
        "metrics": {k: row.get(k) for k in record.baseline},
    }


def alternatives(record: RunRecord, k: int = TOP_K) -> dict[str, Any]:
    """The k best trials (each at its best rung) and every rung on the feasible Pareto front."""
    top = ranked_trials(record)[:k]
    return {
        "objective": record.spec["config"]["objective"],
        "top_k": [alternative(record, t.best) for t in top],
        "pareto": [alternative(record, row) for row in pareto_rungs(record)],
        "how_to_train": "set the recipe's hyperparameters to `params` and training.stop_at_step to `step`",
    }


# --- writing --------------------------------------------------------------------------------


def write_exports(run_dir: Path) -> list[Path]:
    """Write the export files into RUN_DIR/best/ from best/recipe.yaml; returns their paths."""
    run = RunDir(run_dir)
    best = run.best
    recipe, sections = load_recipe(run.recipe)
    provenance = sections["provenance"]
    class_name, kwargs = trl_kwargs(recipe)
    lora = lora_kwargs(recipe)
    trl_file = best / f"trl_{class_name.removesuffix('Config').lower()}_config.yaml"
    trl = {
        "config_class": f"trl.{class_name}",
        "kwargs": kwargs,
        "stop_at_step": recipe.training.last_step,
        "peft_config": "peft_lora_config.json" if lora else None,
        "model": recipe.model,
        "provenance": provenance,
    }
    header = (
        f"# TRL {class_name} equivalent to recipe.yaml: {class_name}(output_dir=..., **kwargs).\n"
        "# The learning-rate schedule runs to max_steps; the measured rung stopped at stop_at_step.\n"
    )
    written = [write_text(trl_file, header + yaml.safe_dump(trl, sort_keys=False))]
    if lora is not None:
        written.append(write_json(best / "peft_lora_config.json", {"lora_config": lora, "provenance": provenance}))
    domain = Path(recipe.data.domain_train)
    if not domain.is_file():
        raise InputError([f"{domain}: not found; service epochs are counted over the sweep's domain training rows"])
    examples = len(read_jsonl(domain))
    service = service_hyperparameters(recipe, examples)
    written.append(write_json(best / "service_hyperparameters.json", {**service, "provenance": provenance}))
    written.append(
        write_json(best / "alternatives.json", {**alternatives(load_run(run_dir)), "provenance": provenance})
    )
    return written


def service_warnings(best_dir: Path) -> list[str]:
    """The out-of-range flags of an exported service_hyperparameters.json (empty when all fit)."""
    path = Path(best_dir) / "service_hyperparameters.json"
    return json.loads(path.read_text())["warnings"] if path.is_file() else []
