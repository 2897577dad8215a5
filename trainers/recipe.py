"""The recipe: everything one training run needs, as plain typed values.

A recipe is what a trial trains and what `hpo export` writes; `python -m trainers
recipe.yaml` runs it standalone with the trainer of its stage. It knows nothing of Ray or
Optuna, nor of the stages: reading a recipe file is given each stage's hyperparameters
dataclass (trainers.stages.load_recipe gives every registered stage's).
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainers.shared import EXACT_MATCH, Scoring

Limits = tuple[float, float, bool]  # (low, high, low_is_open): what a value must respect to make sense at all


def tunable(default: Any, low: float, high: float, low_open: bool = False) -> Any:
    """A hyperparameter field with its hard limits (service limits are stricter and are checked at export)."""
    return field(default=default, metadata={"limits": (low, high, low_open)})


@dataclass(frozen=True)
class Hyperparameters:
    """What the search tunes for every stage; defaults are the published LoRA SFT service defaults.

    Each stage has its own dataclass (this one, or a subclass adding its method's own
    hyperparameters with their published defaults): trainers.stage.Stage.hyperparameters.
    """

    learning_rate: float = tunable(1e-5, 0.0, 1.0, low_open=True)
    lora_rank: int = tunable(32, 1, 1024)
    lora_alpha: int = tunable(64, 1, 4096)
    lora_dropout: float = tunable(0.05, 0.0, 0.9)
    warmup_ratio: float = tunable(0.15, 0.0, 0.9)
    weight_decay: float = tunable(0.0, 0.0, 1.0)


@dataclass(frozen=True)
class MixedHyperparameters(Hyperparameters):
    """A stage that mixes general rows into its training (SFT, CPT): the share of domain rows too."""

    mixing_ratio: float = tunable(0.5, 0.0, 1.0, low_open=True)  # fraction of domain examples in the training mix


# Training settings a search space may tune as well (the memory savers and the batch).
TRAINING_PARAMETERS = ("effective_batch", "gradient_checkpointing", "packing", "load_in_4bit")
TRAINING_LIMITS: dict[str, Limits] = {"effective_batch": (1, 65536, False)}
BOOLEAN_PARAMETERS = frozenset({"gradient_checkpointing", "packing", "load_in_4bit"})
LORA_HYPERPARAMETERS = frozenset({"lora_rank", "lora_alpha", "lora_dropout"})


def hyperparameter_names(kind: type[Hyperparameters]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


def tunable_names(kind: type[Hyperparameters]) -> tuple[str, ...]:
    """What a search space of a stage with these hyperparameters may tune."""
    return hyperparameter_names(kind) + TRAINING_PARAMETERS


def limits_of(kind: type[Hyperparameters]) -> dict[str, Limits]:
    """Every tunable value's hard limits, by name."""
    return {**{f.name: f.metadata["limits"] for f in dataclasses.fields(kind)}, **TRAINING_LIMITS}


def integer_names(kind: type[Hyperparameters]) -> frozenset[str]:
    """The tunable values that are whole numbers."""
    return frozenset({f.name for f in dataclasses.fields(kind) if f.type in (int, "int")} | {"effective_batch"})


@dataclass(frozen=True)
class DataPaths:
    """The data files of a run: domain rows hold the fields of the recipe's stage (its `row_fields`); `general_mix`
    is None for a stage that mixes no general rows into training."""

    domain_train: str
    domain_eval: str
    general_mix: str | None
    general_probe: str
    instruction_probe: str | None = None
    domain_test: str | None = None


DISTRIBUTED_MODES = ("auto", "ddp", "fsdp")  # auto: FSDP for method full, DDP for LoRA


@dataclass(frozen=True)
class Training:
    """How one run trains: batch, lengths, schedule, memory savers and how processes share the work.

    `effective_batch` (rows per optimizer step over every process) makes `batch_size` the
    largest micro-batch per process and derives the accumulation from it (`batch_plan`);
    without it each process takes `batch_size` x `grad_accum` rows a step. `distributed`
    applies when the run has several processes (torchrun, or `resources.workers`).
    """

    batch_size: int = 8
    grad_accum: int = 1
    effective_batch: int | None = None
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30% more compute
    packing: bool = False  # several short rows in one max_seq_len sequence (SFT, CPT)
    load_in_4bit: bool = False  # QLoRA: the frozen base in 4-bit NF4 (bitsandbytes, GPU only)
    distributed: str = "auto"  # auto | ddp | fsdp
    max_seq_len: int = 256
    max_steps: int = 60  # length of the learning-rate schedule
    stop_at_step: int | None = None  # stop early (a rung of the schedule), None = max_steps
    rung_interval: int = 20  # probe and report every this many optimizer steps
    threads: int = 1  # torch intra-op threads; match the CPUs given to the trial
    duplication: int = 1  # copies of each domain row in the training set (small data sets)
    callbacks: tuple[str, ...] = ()  # extra transformers TrainerCallbacks, "package.module:Class"
    import_root: str | None = None  # put first on the import path for `callbacks` (the sweep file's folder)

    @property
    def last_step(self) -> int:
        return self.stop_at_step or self.max_steps

    def batch_plan(self, processes: int = 1) -> tuple[int, int]:
        """(micro-batch per process, gradient accumulation) for a run over `processes` processes.

        With `effective_batch`, each process takes effective_batch / processes rows a step in
        the largest micro-batch up to `batch_size` that divides them; otherwise
        (batch_size, grad_accum) as given.
        """
        if self.effective_batch is None:
            return self.batch_size, self.grad_accum
        if self.effective_batch % processes:
            raise ValueError(
                f"training.effective_batch ({self.effective_batch}) must be divisible by the number of "
                f"processes ({processes}) (change one of them)"
            )
        rows = self.effective_batch // processes
        micro = max(d for d in range(1, min(self.batch_size, rows) + 1) if rows % d == 0)
        return micro, rows // micro

    def rows_per_step(self, processes: int = 1) -> int:
        """Rows one optimizer step consumes over all `processes`."""
        micro, accum = self.batch_plan(processes)
        return micro * accum * processes

    def sharded(self, method: str) -> bool:
        """Whether several processes shard weights, gradients and optimizer state (FSDP) instead of
        each holding a copy (DDP): `distributed: auto` shards full-rank runs only."""
        return self.distributed == "fsdp" or (self.distributed == "auto" and method == "full")


@dataclass(frozen=True)
class Probes:
    domain_examples: int = 60
    general_passages: int = 100  # 90% of draws within 1 point of a 10x sample: benchmarks/README.md, "How many passages"
    instruction_examples: int = 30
    max_new_tokens: int = 12


DEFAULT_CORPUS = "general"  # data.general_probe, reported as `general_perplexity`


def corpus_metric(name: str) -> str:
    """The rung metric of a general corpus: `general_perplexity`, or `general_perplexity_<name>`."""
    return "general_perplexity" if name == DEFAULT_CORPUS else f"general_perplexity_{name}"


@dataclass(frozen=True)
class Corpus:
    """A held-out general text corpus ({"text"} rows) probed for perplexity at every rung."""

    name: str
    path: str
    passages: int


@dataclass(frozen=True)
class Benchmark:
    """An lm-evaluation-harness task scored for the base model and the best recipe when a sweep ends.

    `include` is a local task YAML (or a folder of them) whose `dataset_kwargs.data_files`
    are relative to it; without it, `task` is one of lm-eval's own tasks (they fetch their
    data from the hub). `limit` caps the examples; `chat_template` applies the model's.
    """

    task: str
    include: str | None = None
    limit: int | None = None
    chat_template: bool = False


@dataclass(frozen=True)
class General:
    """The general-capability suite beyond data.general_probe and data.instruction_probe."""

    corpora: tuple[Corpus, ...] = ()
    benchmarks: tuple[Benchmark, ...] = ()
    benchmarks_each_trial: bool = False  # also score every trial's last rung on the benchmarks


@dataclass(frozen=True)
class Recipe:
    stage: str  # a key of trainers.stages.STAGES
    method: str  # lora | full
    model: str
    data: DataPaths
    labels: tuple[str, ...]
    hyperparameters: Hyperparameters = field(default_factory=MixedHyperparameters)  # the stage's dataclass
    training: Training = field(default_factory=Training)
    probes: Probes = field(default_factory=Probes)
    seed: int = 0
    reward: Scoring | None = None  # stage rft only
    metric: Scoring = EXACT_MATCH  # how answers are scored (stages that score answers: sft)
    general: General = field(default_factory=General)
    start_adapters: tuple[str, ...] = ()  # LoRA adapters merged into the base, in order, before training
    system_prompt: str | None = None  # a system turn before every prompt; None: the chat template's default

    def with_hyperparameters(self, values: dict[str, Any]) -> Recipe:
        """The recipe with a trial's values: hyperparameters, and the training settings a space tunes."""
        hyperparameters = {k: v for k, v in values.items() if k not in TRAINING_PARAMETERS}
        training = {k: v for k, v in values.items() if k in TRAINING_PARAMETERS}
        return dataclasses.replace(
            self,
            hyperparameters=dataclasses.replace(self.hyperparameters, **hyperparameters),
            training=dataclasses.replace(self.training, **training),
        )

    def to_dict(self) -> dict[str, Any]:
        plain = dataclasses.asdict(self)
        plain["labels"] = list(self.labels)
        plain["start_adapters"] = list(self.start_adapters)
        plain["training"]["callbacks"] = list(self.training.callbacks)
        plain["general"]["corpora"] = [dataclasses.asdict(c) for c in self.general.corpora]
        plain["general"]["benchmarks"] = [dataclasses.asdict(b) for b in self.general.benchmarks]
        return plain


# stage name -> its hyperparameters dataclass: what reading a recipe file is given
HyperparametersOf = Mapping[str, type[Hyperparameters]]


def recipe_from_dict(plain: dict[str, Any], hyperparameters: type[Hyperparameters]) -> Recipe:
    """Inverse of `Recipe.to_dict` for a stage with these `hyperparameters`; unknown keys raise TypeError naming them."""
    plain = dict(plain)
    training = dict(plain.pop("training", {}))
    training["callbacks"] = tuple(training.get("callbacks", ()))
    return Recipe(
        data=DataPaths(**plain.pop("data")),
        labels=tuple(plain.pop("labels")),
        start_adapters=tuple(plain.pop("start_adapters", ())),
        hyperparameters=hyperparameters(**plain.pop("hyperparameters", {})),
        training=Training(**training),
        probes=Probes(**plain.pop("probes", {})),
        reward=Scoring(**reward) if (reward := plain.pop("reward", None)) else None,
        metric=Scoring(**plain.pop("metric", dataclasses.asdict(EXACT_MATCH))),
        general=general_from_dict(plain.pop("general", {})),
        **plain,
    )


def general_from_dict(plain: dict[str, Any]) -> General:
    plain = dict(plain)
    return General(
        corpora=tuple(Corpus(**c) for c in plain.pop("corpora", ())),
        benchmarks=tuple(Benchmark(**b) for b in plain.pop("benchmarks", ())),
        **plain,
    )


# The dataclass each section of a recipe is read into, for naming unknown keys (the stage gives its hyperparameters').
RECIPE_SECTIONS: dict[str, type] = {
    "data": DataPaths,
    "training": Training,
    "probes": Probes,
    "reward": Scoring,
    "metric": Scoring,
    "general": General,
}


def unknown_recipe_keys(plain: dict[str, Any], hyperparameters: type[Hyperparameters]) -> list[str]:
    """`recipe.training.max_step: unknown key 'max_step' (did you mean 'max_steps'?)` for every stray key."""
    lines = []
    sections = [("recipe", plain, Recipe)]
    kinds = {**RECIPE_SECTIONS, "hyperparameters": hyperparameters}
    sections += [(f"recipe.{name}", plain.get(name), kind) for name, kind in kinds.items()]
    for prefix, section, kind in sections:
        known = [f.name for f in dataclasses.fields(kind)]
        for key in section if isinstance(section, dict) else ():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
                lines.append(f"{prefix}.{key}: unknown key '{key}' ({hint})")
    return lines


def yaml_problem(err: yaml.YAMLError) -> str:
    """Where a YAML file is broken and why, as one message with the fix."""
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
    reason = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"broken YAML at {where}: {reason} (fix the syntax there)"


def load_recipe(path: Path, stages: HyperparametersOf) -> tuple[Recipe, dict[str, Any]]:
    """The recipe in a YAML file, and the file's other top-level sections (e.g. `expected`).

    `stages` are the stages it may be of, each with its hyperparameters dataclass. ValueError
    (one line per problem) names the file, the key and the fix.
    """
    try:
        document = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: {yaml_problem(err)}") from err
    if not isinstance(document, dict) or not isinstance(document.get("recipe"), dict):
        raise ValueError(f"{path}: recipe: is required (give a recipe written by `hpo export`)")
    stage = document["recipe"].get("stage")
    if stage not in stages:  # checked first: it decides which trainer reads the rest
        raise ValueError(f"{path}: recipe.stage must be one of {', '.join(stages)}, got {stage!r}")
    if unknown := unknown_recipe_keys(document["recipe"], stages[stage]):
        raise ValueError("\n".join(f"{path}: {line}" for line in unknown))
    try:
        recipe = recipe_from_dict(document.pop("recipe"), stages[stage])
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: recipe: not a valid recipe ({err}); re-export it with `hpo export`") from err
    return recipe, document


def read_recipe(path: Path, stages: HyperparametersOf) -> Recipe | None:
    """The recipe in `path` (of one of `stages`) for a command line; None after printing each problem as
    one `error:` line on stderr (a missing file, broken YAML, an unknown key, a bad value)."""
    if not Path(path).is_file():
        print(f"error: {path}: file not found (pass a recipe written by `hpo export`)", file=sys.stderr)
        return None
    try:
        recipe, _ = load_recipe(Path(path), stages)
    except ValueError as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return None
    return recipe


def save_recipe(path: Path, recipe: Recipe, **sections: Any) -> None:
    document = {"recipe": recipe.to_dict(), **sections}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp.replace(path)
