"""The best recipe in the formats people deploy with, written next to best/recipe.yaml.

    best/trl_<script>_config.yaml     a config `trl sft --config FILE` (rft: `trl grpo`) runs as it is: the model,
                                      the data as a dataset mixture, the trainer's arguments and LoRA under
                                      TRL's own keys (use_peft, lora_r, ...)
    best/peft_lora_config.json        PEFT LoraConfig keyword arguments: LoraConfig(**json.load(file))
    best/service_hyperparameters.json service-style names and limits, out-of-range values flagged
    best/alternatives.json            the top trials and the lift/regression Pareto front

The TRL and PEFT arguments come from the trainers' own config builders, so they are
equivalent to the recipe by construction. Every file carries the recipe's provenance (spec
hash, data hashes, seed, trial id, step): in a `provenance` key, or, in the two files
other tools load and which must hold nothing else, in a comment (TRL) or in recipe.yaml
next to it (PEFT). Values outside a service's range are flagged with the allowed range and
never clamped: a silently changed learning rate is a different recipe from the one the
sweep measured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpo.config.errors import InputError
from hpo.config.service import SERVICE_LIMITS, service_values
from hpo.results.analysis import RunRecord, load_run, pareto_rungs, ranked_trials
from hpo.results.rundir import RunDir, write_json, write_text
from trainers.data import read_jsonl
from trainers.model_store import ModelError, resolve_model
from trainers.recipe import Recipe
from trainers.stages import STAGES, load_recipe

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
# Left out of the TRL config: `trl sft --config` reads it as a boolean and refuses "non_padding", and it only
# counts the tokens a trainer logs; training is the same without it.
TRL_CLI_UNREADABLE = frozenset({"include_num_input_tokens_seen"})
# TRL's ModelConfig keys for the LoRA settings `trl sft/grpo --config` builds its LoraConfig from.
TRL_LORA_KEYS = {
    "r": "lora_r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "target_modules": "lora_target_modules",
    "task_type": "lora_task_type",
}

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


def trl_script(class_name: str) -> str:
    """The `trl` command a config class belongs to: SFTConfig -> sft, GRPOConfig -> grpo."""
    return class_name.removesuffix("Config").lower()


def trl_model(recipe: Recipe) -> str:
    """What `model_name_or_path` loads: the folder a GGUF reference was converted to (the weights the sweep
    trained from), else the reference as given (a folder or a hub id)."""
    try:
        return resolve_model(recipe.model)
    except ModelError:
        return recipe.model


def trl_datasets(recipe: Recipe) -> list[dict[str, Any]]:
    """The recipe's data as TRL's dataset mixture: the domain rows and the general rows mixed into them, each
    its share of the mix (`fraction`; TRL caps the mix where the recipe would repeat rows)."""
    domain = {"path": "json", "data_files": recipe.data.domain_train, "split": "train"}
    if recipe.data.general_mix is None:
        return [domain]
    share = recipe.hyperparameters.mixing_ratio
    general = {"path": "json", "data_files": recipe.data.general_mix, "split": "train"}
    return [{**domain, "fraction": share}, {**general, "fraction": round(1.0 - share, 6)}]


def trl_config(recipe: Recipe) -> tuple[str, dict[str, Any]]:
    """(trl script, its --config document): every key belongs to one of the script's argument classes."""
    class_name, kwargs = trl_kwargs(recipe)
    arguments = {key: value for key, value in kwargs.items() if key not in TRL_CLI_UNREADABLE}
    document: dict[str, Any] = {"model_name_or_path": trl_model(recipe), "datasets": trl_datasets(recipe), **arguments}
    lora = lora_kwargs(recipe)
    if lora is not None:
        document["use_peft"] = True
        document.update({TRL_LORA_KEYS[key]: value for key, value in lora.items() if key in TRL_LORA_KEYS})
    if recipe.reward is not None and recipe.reward.callable:  # `trl grpo` imports a dotted path
        document["reward_funcs"] = [recipe.reward.callable.replace(":", ".")]
    return trl_script(class_name), document


def trl_header(recipe: Recipe, script: str, provenance: dict[str, Any]) -> str:
    """The comment above a TRL config: how to run it, what it leaves out, where it came from."""
    lines = [
        f"trl {script} --config trl_{script}_config.yaml  (TRL's own keys only; equivalent to recipe.yaml)",
        f"The learning-rate schedule runs to max_steps; the measured rung stopped at step {recipe.training.last_step}.",
        "The sweep formats rows with the model's chat template and may repeat domain rows to reach the mix.",
        "Without a GPU, add: --use_cpu true --bf16 false",
    ]
    if recipe.start_adapters:
        lines.append(f"The sweep's model had these adapters merged first: {', '.join(recipe.start_adapters)}.")
    if recipe.reward is not None and recipe.reward.url:
        lines.append(
            f"The reward is the HTTP endpoint {recipe.reward.url}: give reward_funcs a function that calls it."
        )
    lines.append("provenance: " + json.dumps(provenance, sort_keys=True))
    return "".join(f"# {line}\n" for line in lines)


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
    script, trl = trl_config(recipe)
    header = trl_header(recipe, script, provenance)
    if sections.get("partial"):
        header = "# PARTIAL: the best rung of a sweep that has not finished (see recipe.yaml)\n" + header
    written = [write_text(best / f"trl_{script}_config.yaml", header + yaml.safe_dump(trl, sort_keys=False))]
    lora = lora_kwargs(recipe)
    if lora is not None:
        written.append(write_json(best / "peft_lora_config.json", lora))
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
