"""The sweep file, parsed once into frozen typed config with every problem reported together.

Relative paths in a sweep file are relative to the file itself. `search_space` names a
file, or a built-in space in search_spaces/ by its stem (e.g. `sft_lora`); without it,
the stage's built-in space. What the data files must hold, and what `task` says, is the
stage's (trainers.stage.Stage): its row fields, whether it mixes in general rows, whether it
needs labels or a reward, and the metric it is judged by.

`training.epochs` (`auto` or a number) sizes the schedule from the data
(hpo.guardrails.training_plan) instead of `scheduler.max_steps`; ASHA's longest trial is
then that many steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpo.config.errors import Problems
from hpo.config.general import read_general
from hpo.config.plan import TrainingPlan, training_plan
from hpo.config.reader import Reader, load_yaml
from hpo.config.splits import split_problems
from hpo.config.task import Task, read_task, reference_lines
from hpo.search.history import Identity, warm_start_runs
from hpo.search.objective import GeneralProbe
from hpo.search.space import SearchSpace, load_space
from trainers.data import PROMPT_FIELDS, TEXT_FIELDS, check_rows, read_jsonl
from trainers.model_store import model_folder_problem
from trainers.recipe import (
    DISTRIBUTED_MODES,
    LORA_HYPERPARAMETERS,
    TRAINING_PARAMETERS,
    DataPaths,
    General,
    Probes,
    Recipe,
    Training,
    integer_names,
)
from trainers.stages import DEFAULT_STAGE, METHODS, STAGES, Stage, users_of

BUILTIN_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
WANDB_MODES = ("offline", "online", "disabled")
MAX_WORKERS = 64  # processes of one trial, all on one node
# The rung limits a stage may add to the objective (Stage.rung_limits gives their defaults): their bounds.
RUNG_LIMITS: dict[str, dict[str, Any]] = {
    "max_kl": {"low": 0.0, "low_open": True},
    "min_length_ratio": {"low": 0.0, "high": 1.0},
}


@dataclass(frozen=True)
class Objective:
    """`domain_lift - general_weight * general_regression`, failing past the limits.

    `max_kl` and `min_length_ratio` are rung limits a stage may add (`Stage.rung_limits`; RFT's):
    a rung over the KL limit, or whose training reward rises while the completion length falls
    below `min_length_ratio` of the previous rung's, fails and stops its trial (None: off).
    """

    general_weight: float = 1.0
    max_general_regression: float | None = 0.5
    max_kl: float | None = None
    min_length_ratio: float | None = None
    general: tuple[GeneralProbe, ...] = ()  # general.corpora and general.instruction, beyond general_perplexity


@dataclass(frozen=True)
class Guardrails:
    """`allow_low_reward`: run RFT on a base below the positive-reward gate anyway.
    `service_compatible`: flag values outside the managed service's ranges."""

    allow_low_reward: bool = False
    service_compatible: bool = False


@dataclass(frozen=True)
class Budget:
    trials: int
    concurrency: int = 1
    time_budget_s: float | None = None


@dataclass(frozen=True)
class Resources:
    """What one trial gets: `cpu` and `gpu` in all, over `workers` processes on one node.

    A fraction of a GPU packs small trials onto one (gpu: 0.25, four to a GPU); with
    workers above 1 each process takes one whole GPU (DDP or FSDP over gpu: workers).
    `wait_s`: how long a sweep on a cluster that cannot fit one trial yet waits for its
    autoscaler to add a node before it gives up (embedded Ray refuses at once: this machine
    will not grow).
    """

    cpu: float = 1.0
    gpu: float = 0.0
    workers: int = 1
    wait_s: float = 600.0


@dataclass(frozen=True)
class AshaSettings:
    """ASHA over optimizer steps: rungs at rung_interval * reduction_factor**k."""

    rung_interval: int
    max_steps: int
    reduction_factor: float = 3.0


@dataclass(frozen=True)
class SearcherSettings:
    seed: int = 0
    startup_trials: int = 4  # random trials before TPE models the space (defaults count)
    warm_start: tuple[str, ...] = ()  # earlier run directories of the same model, stage and method (hpo.search.history)


@dataclass(frozen=True)
class Checkpoints:
    """`keep`: each trial's best-scoring rung checkpoints kept (its newest is kept too while it runs,
    to resume from); once a trial ends, only the sweep's best trial keeps any."""

    keep: int = 2


@dataclass(frozen=True)
class Tracking:
    """W&B mirror of the sweep: offline by default (no account, no network; `wandb sync` later)."""

    wandb: str = "offline"
    project: str = "forge-hpo"


@dataclass(frozen=True)
class SweepConfig:
    path: str
    name: str
    recipe: Recipe  # the base recipe; each trial replaces its hyperparameters
    space: SearchSpace
    objective: Objective
    budget: Budget
    resources: Resources
    scheduler: AshaSettings
    searcher: SearcherSettings
    tracking: Tracking
    output_dir: str
    guardrails: Guardrails = field(default_factory=Guardrails)
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    plan: TrainingPlan | None = None  # set when training.epochs sized the schedule from the data
    min_lift: float = 0.0  # task.min_lift: the verdict's smallest lift that matters (hpo.judge.verdict)

    def resolved(self) -> dict[str, Any]:
        """Plain data for spec.yaml; equal configs give equal dicts."""
        plain = dataclasses.asdict(self)
        plain["recipe"] = self.recipe.to_dict()
        return plain

    def spec_hash(self) -> str:
        plain = self.resolved()
        plain.pop("path")
        plain.pop("output_dir")
        plain["data_sha256"] = data_hashes(self.recipe.data, self.recipe.general)
        encoded = json.dumps(plain, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]


def data_hashes(data: DataPaths, general: General | None = None) -> dict[str, str]:
    """The sha256 of every data file a sweep reads: data.*, general.corpora and local benchmark tasks."""
    files = {name: path for name, path in dataclasses.asdict(data).items() if path is not None}
    general = general or General()
    files.update({f"general.{corpus.name}": corpus.path for corpus in general.corpora})
    for benchmark in general.benchmarks:
        if benchmark.include is not None and Path(benchmark.include).is_file():
            files[f"benchmark.{benchmark.task}"] = benchmark.include
    return {name: hashlib.sha256(Path(path).read_bytes()).hexdigest() for name, path in files.items()}


def load_sweep(path: Path | str, quick: bool = False) -> SweepConfig:
    """Parse and validate a sweep file; raises InputError listing every problem.

    With `quick`, the file's `quick:` section overrides its other sections (one level
    deep): a shorter run of the same sweep, e.g. fewer trials and steps.
    """
    path = Path(path)
    problems = Problems(path)
    document = load_yaml(path, problems)
    problems.raise_if_any()
    if document is not None and not isinstance(document, dict):  # nothing else can be read from it
        problems.add("(top level)", f"must be a mapping of keys to values, got {type(document).__name__}")
        problems.raise_if_any()
    if isinstance(document, dict) and "stages" in document:
        problems.add("stages", "this file is a pipeline of stages; load it with hpo.run.pipeline.load_pipeline")
        problems.raise_if_any()
    document = quick_document(document, quick, problems)
    problems.raise_if_any()
    config = sweep_from_document(document, path, problems)
    problems.raise_if_any()
    return config


def overlay(document: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`document` with `overrides` applied one level deep: a section given in both is merged key by key."""
    merged = dict(document)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {k: v for k, v in {**merged[key], **value}.items() if v is not None}
        else:
            merged[key] = value
    return merged


def quick_document(document: object, quick: bool, problems: Problems) -> object:
    """The document without its `quick:` section, or with that section applied when `quick` is set."""
    if not isinstance(document, dict):
        return document
    document = dict(document)
    overrides = document.pop("quick", None)
    if overrides is not None and not isinstance(overrides, dict):
        problems.add("quick", f"must be a mapping of sections to override, got {type(overrides).__name__}")
    elif quick and overrides is None:
        problems.add("quick", "--quick needs a quick: section with the overrides (e.g. quick: {budget: {trials: 3}})")
    elif quick:
        document = overlay(document, overrides)
        document["name"] = f"{document.get('name') or 'sweep'}-quick"
    return document


def sweep_from_document(document: object, path: Path, problems: Problems) -> SweepConfig:
    """The sweep a parsed document describes; problems are collected, not raised.

    `path` is the file the document came from: relative paths resolve against its folder.
    """
    top = Reader(document, problems)
    base = path.parent
    name = top.text("name", path.stem)
    # a bad stage is reported; the rest is checked as the default stage's
    stage = STAGES.get(top.text("stage", DEFAULT_STAGE.name, choices=tuple(STAGES)), DEFAULT_STAGE)
    method = top.text("method", "lora", choices=METHODS)
    if method in METHODS and method not in stage.methods:
        problems.add("method", f"stage {stage.name} supports {', '.join(stage.methods)}, got '{method}'")
    model = _model(top, base)
    start_adapters = _start_adapters(top, base)
    task = read_task(top, base, stage)
    data = _data(top, base, stage, task, problems)
    general, general_probes = read_general(top, base, data.instruction_probe)
    space = _space(top, base, stage, method, problems)
    training, epochs = _training(top.section("training"), base)
    resources = _resources(top.section("resources"))
    _check_training(problems, method, training, resources, space)
    scheduler, plan = _scheduler(
        top.section("scheduler", required=True), training, epochs, stage, data, space, resources.workers
    )
    training = dataclasses.replace(
        training,
        max_steps=scheduler.max_steps,
        rung_interval=scheduler.rung_interval,
        duplication=plan.duplication if plan else training.duplication or 1,
    )
    probes = _probes(top.section("probes"))
    seed = top.number("seed", 0, low=0, integer=True)
    for key, line in stage.sweep_problems(training, lambda name: sweep_values(name, training, space, stage)):
        problems.add(key, line)
    recipe = Recipe(
        stage.name,
        method,
        model,
        data,
        task.labels,
        hyperparameters=stage.hyperparameters(),
        training=training,
        probes=probes,
        seed=seed,
        reward=task.reward,
        start_adapters=start_adapters,
        system_prompt=task.system_prompt,
        metric=task.metric,
        general=general,
    )
    config = SweepConfig(
        path=str(path.resolve()),
        name=name,
        recipe=recipe,
        space=space,
        objective=dataclasses.replace(_objective(top.section("objective"), stage), general=general_probes),
        budget=_budget(top.section("budget", required=True)),
        resources=resources,
        scheduler=scheduler,
        searcher=_searcher(top.section("searcher"), seed, base, Identity(model, stage.name, method)),
        tracking=_tracking(top.section("tracking")),
        output_dir=_output_dir(top, base),
        guardrails=_guardrails(top.section("guardrails")),
        checkpoints=_checkpoints(top.section("checkpoints")),
        plan=plan,
        min_lift=task.min_lift,
    )
    top.finish()
    return config


def _model(top: Reader, base: Path) -> str:
    model = top.text("model")
    local = (base / model).expanduser()
    looks_local = model.startswith(("/", "./", "../", "~")) or model.endswith(".gguf")
    if looks_local and not local.exists():
        top.problems.add("model", f"path not found: {model} (resolved to {local.resolve()}; fix the path)")
    if model and local.is_dir() and (problem := model_folder_problem(local.resolve())):
        top.problems.add("model", problem)
    return str(local.resolve()) if local.exists() else model


def _start_adapters(top: Reader, base: Path) -> tuple[str, ...]:
    """LoRA adapters (e.g. an earlier sweep's best/adapter) merged into the model, in order, before training."""
    adapters = []
    for number, ref in enumerate(top.texts("start_adapters", None)):
        folder = (base / ref).expanduser().resolve()
        if not (folder / "adapter_config.json").is_file():
            top.problems.add(
                f"start_adapters[{number}]",
                f"no LoRA adapter at {ref} (resolved to {folder}; give a folder with adapter_config.json)",
            )
        adapters.append(str(folder))
    return tuple(adapters)


def _data(top: Reader, base: Path, stage: Stage, task: Task, problems: Problems) -> DataPaths:
    """The data paths, every file's rows checked: fields, labels, and references the task's scorer can score."""
    section = top.section("data", required=True)
    mixing = GeneralMix(section, base, stage)
    stage.read_data(mixing)
    paths = {
        "domain_train": section.path("domain_train", base),
        "domain_eval": section.path("domain_eval", base),
        "general_mix": mixing.path,
        "general_probe": section.path("general_probe", base),
        "instruction_probe": section.path("instruction_probe", base, required=False),
        "domain_test": section.path("domain_test", base, required=False),
    }
    if section.has("mmlu_probe"):
        section.used.add("mmlu_probe")
        problems.add(
            "data.mmlu_probe",
            "is replaced by general.benchmarks, scored through lm-evaluation-harness "
            "(e.g. general: {benchmarks: [{task: mmlu_demo, include: lm_eval_tasks/mmlu_demo.yaml}]}; see docs/sweep-file.md)",
        )
    section.finish()
    fields = {"general_probe": TEXT_FIELDS, "instruction_probe": PROMPT_FIELDS}
    scoring = stage.reference_scoring(task.metric, task.reward)
    clean = {}  # domain files whose rows are sound: compared with each other
    for key, file in paths.items():
        if file is None or not file.is_file():
            continue
        domain = key.startswith("domain")
        if key in fields:
            found = check_rows(file, f"data.{key}", fields[key])
        else:  # the rows the stage trains on (general_mix: mixed in with them)
            found = stage.row_problems(file, f"data.{key}", task.labels if domain else ())
        problems.extend(found)
        if domain and not found and scoring is not None:
            problems.extend(reference_lines(file, f"data.{key}", scoring))
        if domain and not found:
            clean[key] = file
    errors, _ = split_problems(clean, stage.row_fields)  # the warnings are hpo validate's and hpo sweep's
    for key, message in errors:
        problems.add(key, message)
    return DataPaths(**{k: str(v) if v else None for k, v in paths.items()})  # type: ignore[arg-type]


class GeneralMix:
    """`data.general_mix` as the stage asks for it (trainers.stage.DataFields): required, or refused."""

    def __init__(self, section: Reader, base: Path, stage: Stage) -> None:
        self.section, self.base, self.stage = section, base, stage
        self.path: Path | None = None

    def general_mix(self) -> None:
        self.path = self.section.path("general_mix", self.base)

    def no_general_mix(self, reason: str) -> None:
        self.path = self.section.path("general_mix", self.base, required=False)
        if self.path is not None:
            name = self.stage.name
            self.section.problems.add(
                "data.general_mix",
                f"stage {name} {reason} and mixes in no general rows (remove it; "
                f"in a pipeline set `{name}: {{data: {{general_mix: null}}}}`)",
            )
            self.path = None


def _space(top: Reader, base: Path, stage: Stage, method: str, problems: Problems) -> SearchSpace:
    default = stage.builtin_space(method)
    if default is None and not top.has("search_space"):
        builtin = ", ".join(sorted(p.stem for p in BUILTIN_SPACES.glob("*.yaml")))
        problems.add(
            "search_space",
            f"is required for {stage.name}/{method}: no built-in space (give a .yaml path; built-in: {builtin})",
        )
        return SearchSpace("", stage.name, method, ())
    ref = top.text("search_space", default)
    candidate = (base / ref).resolve()
    file = candidate if candidate.suffix in (".yaml", ".yml") else BUILTIN_SPACES / f"{ref}.yaml"
    if not file.is_file():
        builtin = ", ".join(sorted(p.stem for p in BUILTIN_SPACES.glob("*.yaml")))
        problems.add("search_space", f"not found: {ref} (give a .yaml path or a built-in space: {builtin})")
        return SearchSpace(str(file), stage.name, method, ())
    space = load_space(file, problems)
    if (space.stage, space.method) != (stage.name, method) and space.stage and method in METHODS:
        problems.add(
            "search_space",
            f"{file.name} is for {space.stage}/{space.method}, the sweep is {stage.name}/{method} "
            "(pick the matching space)",
        )
    for parameter in space.parameters:
        key = f"{Path(space.path).name}: parameters.{parameter.name}"
        owners = users_of(parameter.name)
        if method == "full" and parameter.name in LORA_HYPERPARAMETERS:
            problems.add("search_space", f"{key}: method full trains no LoRA adapter (remove it)")
        if owners and stage.name not in owners:
            problems.add("search_space", f"{key}: only stage {', '.join(owners)} uses it (remove it)")
    return space


def _scheduler(
    section: Reader,
    training: Training,
    epochs: int | str | None,
    stage: Stage,
    data: DataPaths,
    space: SearchSpace,
    workers: int = 1,
) -> tuple[AshaSettings, TrainingPlan | None]:
    """ASHA's settings; with `training.epochs`, max_steps comes from the data size instead."""
    interval = section.number("rung_interval", None, low=1, integer=True)
    max_steps = section.number("max_steps", None, low=1, integer=True)
    factor = section.number("reduction_factor", 3.0, low=1.0, high=16.0, low_open=True)
    section.finish()
    if not section.present:  # the missing section is the one problem to report
        return AshaSettings(interval or 1, max_steps or 1, factor), None
    given = {name for name in ("rung_interval", "max_steps") if section.has(name)}
    plan = _plan(training, epochs, stage, data, space, workers) if epochs is not None else None
    if epochs is not None and max_steps is not None:
        section.problems.add(
            "scheduler.max_steps",
            "give scheduler.max_steps or training.epochs, not both (epochs size it from the data)",
        )
    elif plan is not None:
        max_steps = plan.max_steps
        interval = interval or max(1, math.ceil(max_steps / factor**2))  # three rungs by default
    elif max_steps is None and epochs is None and "max_steps" not in given:  # a bad value is reported already
        section.problems.add(
            "scheduler.max_steps", "is required (add it, or size it from the data: training.epochs: auto)"
        )
    if interval is None and max_steps is not None and "rung_interval" not in given:
        section.problems.add("scheduler.rung_interval", "is required (add it)")
    if interval and max_steps and interval > max_steps:
        section.problems.add("scheduler.rung_interval", f"must be <= scheduler.max_steps ({max_steps}), got {interval}")
    return AshaSettings(interval or 1, max_steps or 1, factor), plan


def _plan(
    training: Training, epochs: int | str, stage: Stage, data: DataPaths, space: SearchSpace, workers: int = 1
) -> TrainingPlan | None:
    """The data-size plan for `training.epochs` ("auto" or a number of epochs); None if the data is unreadable
    (that problem is already reported)."""
    try:
        examples = len(read_jsonl(data.domain_train)) if Path(data.domain_train).is_file() else 0
    except ValueError:
        return None
    if examples == 0:
        return None
    first = {k: v for k, v in space.defaults().items() if v is not None}  # the first trial's values
    tuned = {k: v for k, v in first.items() if k in TRAINING_PARAMETERS}
    defaults = stage.hyperparameters(**{k: v for k, v in first.items() if k not in tuned})
    first_training = dataclasses.replace(training, **tuned)
    try:
        batch = first_training.rows_per_step(workers)
    except ValueError:  # an effective batch the processes cannot share: reported by _check_training
        return None
    return training_plan(
        examples,
        stage.rows_per_step(batch, defaults),  # at the first trial's (the defaults') settings
        defaults.warmup_ratio,
        epochs=None if epochs == "auto" else int(epochs),
        duplication=training.duplication,
    )


def _training(section: Reader, base: Path) -> tuple[Training, int | str | None]:
    """Batch and lengths (the schedule is filled in from the scheduler), and `epochs` if given.

    `duplication` stays None unless given, so that a data-size plan can choose it.
    `callbacks` are imported here, with the sweep file's folder first on the path.
    """
    epochs = section.raw("epochs", None)
    if (
        epochs is not None
        and epochs != "auto"
        and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1)
    ):
        section.problems.add(section.key("epochs"), f"must be auto or an integer >= 1, got {epochs!r}")
        epochs = None
    callbacks = _callbacks(section, str(base.resolve()))
    training = Training(
        batch_size=section.number("batch_size", Training.batch_size, low=1, integer=True),
        grad_accum=section.number("grad_accum", Training.grad_accum, low=1, integer=True),
        max_seq_len=section.number("max_seq_len", Training.max_seq_len, low=16, integer=True),
        duplication=section.number("duplication", None, low=1, integer=True),  # type: ignore[arg-type]
        callbacks=callbacks,
        import_root=str(base.resolve()) if callbacks else None,
        effective_batch=section.number("effective_batch", None, low=1, integer=True),  # type: ignore[arg-type]
        gradient_checkpointing=section.flag("gradient_checkpointing", Training.gradient_checkpointing),
        packing=section.flag("packing", Training.packing),
        load_in_4bit=section.flag("load_in_4bit", Training.load_in_4bit),
        distributed=section.text("distributed", Training.distributed, choices=DISTRIBUTED_MODES),
    )
    section.finish()
    return training, epochs


def _callbacks(section: Reader, import_root: str) -> tuple[str, ...]:
    """`training.callbacks`: extra transformers TrainerCallbacks, each "package.module:Class"."""
    specs = section.texts("callbacks", None)
    if specs:
        from trainers.callbacks import import_callback  # imports transformers: only when callbacks are given

        for number, spec in enumerate(specs):
            try:
                import_callback(spec, import_root)
            except ValueError as err:
                key = f"{section.key('callbacks')}[{number}]"
                section.problems.add(key, f"{err} (fix the name, or the module next to the sweep file)")
    return specs


def _probes(section: Reader) -> Probes:
    probes = Probes(
        domain_examples=section.number("domain_examples", Probes.domain_examples, low=1, integer=True),
        general_passages=section.number("general_passages", Probes.general_passages, low=1, integer=True),
        instruction_examples=section.number("instruction_examples", Probes.instruction_examples, low=1, integer=True),
        max_new_tokens=section.number("max_new_tokens", Probes.max_new_tokens, low=1, integer=True),
    )
    section.finish()
    return probes


def _objective(section: Reader, stage: Stage) -> Objective:
    limits = stage.rung_limits()  # e.g. RFT's max_kl and min_length_ratio, with their defaults
    for key in RUNG_LIMITS:
        if key not in limits and section.has(key):
            section.used.add(key)
            users = ", ".join(s.name for s in STAGES.values() if key in s.rung_limits())
            section.problems.add(section.key(key), f"only stage {users} uses it (remove it; this sweep is {stage.name})")
    objective = Objective(
        general_weight=section.number("general_weight", Objective.general_weight, low=0.0),
        max_general_regression=section.number("max_general_regression", Objective.max_general_regression, low=0.0),
        **{key: section.number(key, limits[key], **RUNG_LIMITS[key]) for key in RUNG_LIMITS if key in limits},
    )
    section.finish()
    return objective


def _guardrails(section: Reader) -> Guardrails:
    guardrails = Guardrails(
        allow_low_reward=section.flag("allow_low_reward", Guardrails.allow_low_reward),
        service_compatible=section.flag("service_compatible", Guardrails.service_compatible),
    )
    section.finish()
    return guardrails


def _checkpoints(section: Reader) -> Checkpoints:
    checkpoints = Checkpoints(keep=section.number("keep", Checkpoints.keep, low=1, high=20, integer=True))
    section.finish()
    return checkpoints


def _budget(section: Reader) -> Budget:
    budget = Budget(
        trials=section.number("trials", low=1, integer=True) or 1,
        concurrency=section.number("concurrency", 1, low=1, integer=True),
        time_budget_s=section.number("time_budget_s", None, low=0.0, low_open=True),
    )
    section.finish()
    return budget


def _resources(section: Reader) -> Resources:
    resources = Resources(
        cpu=section.number("cpu", Resources.cpu, low=0.0, low_open=True),
        gpu=section.number("gpu", Resources.gpu, low=0.0),
        wait_s=section.number("wait_s", Resources.wait_s, low=0.0),
        workers=section.number("workers", Resources.workers, low=1, high=MAX_WORKERS, integer=True),
    )
    section.finish()
    _check_workers(section, resources)
    return resources


def _output_dir(top: Reader, base: Path) -> str:
    """Where run directories go: a folder that exists or can be created, and can be written to."""
    output_dir = top.path("output_dir", base, required=False, must_exist=False) or (base / "runs").resolve()
    problem = folder_problem(output_dir)
    if problem:
        top.problems.add("output_dir", f"{problem} (give a folder the sweep can write its run directories into)")
    return str(output_dir)


def folder_problem(folder: Path) -> str:
    """Why `folder` cannot hold new run directories, or empty when it can (it need not exist yet)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == folder and not folder.is_dir():
        return f"{folder} is a file, not a folder"
    if not existing.is_dir():
        return f"{folder} cannot be created: {existing} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{folder} cannot be created or written: no permission to write in {existing}"
    return ""


def _check_workers(section: Reader, resources: Resources) -> None:
    """Over several processes, each takes at least one CPU and one whole GPU (a single process may
    take a share of a CPU, as Ray allows: many small trials at a time)."""
    workers, gpu = resources.workers, resources.gpu
    if workers > 1 and gpu and gpu != workers:
        section.problems.add(
            section.key("gpu"),
            f"with workers: {workers} each process takes one whole GPU: give gpu: {workers} "
            f"(or gpu: 0 for processes on CPUs), got {gpu:g}",
        )
    if workers == 1 and gpu > 1:
        section.problems.add(
            section.key("gpu"),
            f"one process trains on one GPU: give workers: {gpu:g} to train over {gpu:g} GPUs, or gpu: 1, got {gpu:g}",
        )
    if workers > 1 and resources.cpu < workers:
        section.problems.add(
            section.key("cpu"), f"must be >= resources.workers ({workers}: one CPU per process), got {resources.cpu:g}"
        )


def tuned_values(name: str, training: Training, space: SearchSpace) -> tuple[Any, ...]:
    """The values a training setting takes over the sweep: its space parameter's choices, else the sweep file's."""
    parameter = next((p for p in space.parameters if p.name == name), None)
    if parameter is None:
        return (getattr(training, name),)
    if parameter.type == "choice":
        return parameter.values
    return tuple(v for v in (parameter.low, parameter.high) if v is not None)


def sweep_values(name: str, training: Training, space: SearchSpace, stage: Stage) -> tuple[Any, ...]:
    """Every value a training setting or hyperparameter takes over the sweep: its space parameter's choices,
    every whole number of an integer range, the ends of a float range; else the sweep file's or the default."""
    parameter = next((p for p in space.parameters if p.name == name), None)
    if parameter is None:
        given = training if name in TRAINING_PARAMETERS else stage.hyperparameters()
        return (getattr(given, name, None),)
    if parameter.type == "choice":
        return parameter.values
    if name in integer_names(stage.hyperparameters) and parameter.low is not None and parameter.high is not None:
        return tuple(range(int(parameter.low), int(parameter.high) + 1, parameter.step or 1))
    return tuple(v for v in (parameter.low, parameter.high) if v is not None)


def _check_training(problems: Problems, method: str, training: Training, resources: Resources, space: SearchSpace) -> None:
    """The memory savers and the batch against the method and the trials' resources."""
    if True in tuned_values("load_in_4bit", training, space):
        for line in four_bit_problems(method, resources):
            problems.add("training.load_in_4bit", line)
    for batch in tuned_values("effective_batch", training, space):
        if batch is not None and batch % resources.workers:
            problems.add(
                "training.effective_batch",
                f"must be divisible by resources.workers ({resources.workers}), got {batch:g} "
                "(each process takes an equal share of every step)",
            )


def four_bit_problems(method: str, resources: Resources) -> list[str]:
    """Why a 4-bit base (QLoRA) cannot train here: the method, no GPU for the trials, no bitsandbytes."""
    import importlib.util

    lines = []
    if method != "lora":
        lines.append(f"a 4-bit base cannot train every weight: it is for method lora (QLoRA), got method {method}")
    if resources.gpu == 0:
        lines.append(
            "4-bit weights (bitsandbytes) need a GPU and the trials get none (resources.gpu: 0): "
            "give them one, or set load_in_4bit: false"
        )
    elif importlib.util.find_spec("bitsandbytes") is None:
        lines.append("needs bitsandbytes, which is not installed (pip install bitsandbytes)")
    return lines


def _searcher(section: Reader, seed: int, base: Path, identity: Identity) -> SearcherSettings:
    entries = section.texts("warm_start", None)
    searcher = SearcherSettings(
        seed=section.number("seed", seed, low=0, integer=True),
        startup_trials=section.number("startup_trials", SearcherSettings.startup_trials, low=1, integer=True),
        warm_start=warm_start_runs(entries, base, identity, section.problems, section.key("warm_start")),
    )
    section.finish()
    return searcher


def _tracking(section: Reader) -> Tracking:
    tracking = Tracking(
        wandb=section.text("wandb", Tracking.wandb, choices=WANDB_MODES),
        project=section.text("project", Tracking.project),
    )
    section.finish()
    return tracking


PROBE_FILES = (
    ("domain_eval", "domain_examples"),
    ("general_probe", "general_passages"),
    ("instruction_probe", "instruction_examples"),
)


def probe_shortfalls(config: SweepConfig) -> list[str]:
    """Warnings for probe files with fewer rows than the probes ask for: every rung is scored on fewer
    examples than the sweep file suggests, and a score from a handful of examples is mostly noise."""
    lines = []
    for data_key, probe_key in PROBE_FILES:
        path = getattr(config.recipe.data, data_key)
        wanted = getattr(config.recipe.probes, probe_key)
        rows = len(read_jsonl(path)) if path else wanted
        if rows < wanted:
            lines.append(
                f"{config.path}: data.{data_key}: {rows} row{'' if rows == 1 else 's'}, fewer than probes.{probe_key} ({wanted}): every rung "
                f"is scored on {rows} (add rows, or set probes.{probe_key}: {rows} to say so)"
            )
    return lines
