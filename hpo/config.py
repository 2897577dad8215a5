"""The sweep file, parsed once into frozen typed config with every problem reported together.

Relative paths in a sweep file are relative to the file itself. `search_space` names a
file, or a built-in space in search_spaces/ by its stem (e.g. `sft_lora`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.errors import Problems
from hpo.reader import Reader, load_yaml
from hpo.space import SearchSpace, load_space
from trainers.data import PROMPT_FIELDS, TEXT_FIELDS, check_rows
from trainers.recipe import DataPaths, Probes, Recipe, Training

BUILTIN_SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
STAGES = ("sft",)
METHODS = ("lora",)
WANDB_MODES = ("offline", "online", "disabled")


@dataclass(frozen=True)
class Objective:
    """`domain_lift - general_weight * general_regression`, failing past the limit."""

    general_weight: float = 1.0
    max_general_regression: float | None = 0.5


@dataclass(frozen=True)
class Budget:
    trials: int
    concurrency: int = 1
    time_budget_s: float | None = None


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class Scheduler:
    """ASHA over optimizer steps: rungs at rung_interval * reduction_factor**k."""

    rung_interval: int
    max_steps: int
    reduction_factor: float = 3.0


@dataclass(frozen=True)
class Searcher:
    seed: int = 0
    startup_trials: int = 4  # random trials before TPE models the space (defaults count)


@dataclass(frozen=True)
class Tracking:
    wandb: str = "disabled"
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
    scheduler: Scheduler
    searcher: Searcher
    tracking: Tracking
    output_dir: str

    def resolved(self) -> dict[str, Any]:
        """Plain data for spec.yaml; equal configs give equal dicts."""
        plain = dataclasses.asdict(self)
        plain["recipe"] = self.recipe.to_dict()
        return plain

    def spec_hash(self) -> str:
        plain = self.resolved()
        plain.pop("path")
        plain.pop("output_dir")
        plain["data_sha256"] = data_hashes(self.recipe.data)
        encoded = json.dumps(plain, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]


def data_hashes(data: DataPaths) -> dict[str, str]:
    return {
        name: hashlib.sha256(Path(path).read_bytes()).hexdigest()
        for name, path in dataclasses.asdict(data).items()
        if path is not None
    }


def load_sweep(path: Path | str) -> SweepConfig:
    """Parse and validate a sweep file; raises InputError listing every problem."""
    path = Path(path)
    problems = Problems(path)
    top = Reader(load_yaml(path, problems), problems)
    if problems:
        problems.raise_if_any()
    base = path.parent
    name = top.text("name", path.stem)
    stage = top.text("stage", "sft", choices=STAGES)
    method = top.text("method", "lora", choices=METHODS)
    model = _model(top, base)
    data, labels = _data(top, base, problems)
    scheduler = _scheduler(top.section("scheduler", required=True))
    training = _training(top.section("training"), scheduler)
    probes = _probes(top.section("probes"))
    seed = top.number("seed", 0, low=0, integer=True)
    space = _space(top, base, stage, method, problems)
    config = SweepConfig(
        path=str(path.resolve()),
        name=name,
        recipe=Recipe(stage, method, model, data, labels, training=training, probes=probes, seed=seed),
        space=space,
        objective=_objective(top.section("objective")),
        budget=_budget(top.section("budget", required=True)),
        resources=_resources(top.section("resources")),
        scheduler=scheduler,
        searcher=_searcher(top.section("searcher"), seed),
        tracking=_tracking(top.section("tracking")),
        output_dir=str(top.path("output_dir", base, required=False, must_exist=False) or base / "runs"),
    )
    top.finish()
    problems.raise_if_any()
    return config


def _model(top: Reader, base: Path) -> str:
    model = top.text("model")
    local = (base / model).expanduser()
    looks_local = model.startswith(("/", "./", "../", "~")) or model.endswith(".gguf")
    if looks_local and not local.exists():
        top.problems.add("model", f"path not found: {model} (resolved to {local.resolve()}; fix the path)")
    return str(local.resolve()) if local.exists() else model


def _data(top: Reader, base: Path, problems: Problems) -> tuple[DataPaths, tuple[str, ...]]:
    task = top.section("task", required=True)
    labels = task.texts("labels")
    task.text("metric", "exact_match", choices=("exact_match",))
    task.finish()
    if len(set(labels)) != len(labels):
        problems.add("task.labels", "must not repeat a label")
    section = top.section("data", required=True)
    paths = {
        "domain_train": section.path("domain_train", base),
        "domain_eval": section.path("domain_eval", base),
        "general_mix": section.path("general_mix", base),
        "general_probe": section.path("general_probe", base),
        "instruction_probe": section.path("instruction_probe", base, required=False),
        "domain_test": section.path("domain_test", base, required=False),
    }
    section.finish()
    fields = {"general_probe": TEXT_FIELDS}
    for key, file in paths.items():
        if file is not None and file.is_file():
            with_labels = labels if key.startswith("domain") else ()
            problems.extend(check_rows(file, f"data.{key}", fields.get(key, PROMPT_FIELDS), with_labels))
    return DataPaths(**{k: str(v) if v else None for k, v in paths.items()}), labels  # type: ignore[arg-type]


def _space(top: Reader, base: Path, stage: str, method: str, problems: Problems) -> SearchSpace:
    ref = top.text("search_space", f"{stage}_{method}")
    candidate = (base / ref).resolve()
    file = candidate if candidate.suffix in (".yaml", ".yml") else BUILTIN_SPACES / f"{ref}.yaml"
    if not file.is_file():
        builtin = ", ".join(sorted(p.stem for p in BUILTIN_SPACES.glob("*.yaml")))
        problems.add("search_space", f"not found: {ref} (give a .yaml path or a built-in space: {builtin})")
        return SearchSpace(str(file), stage, method, ())
    space = load_space(file, problems)
    if (space.stage, space.method) != (stage, method) and space.stage:
        problems.add(
            "search_space",
            f"{file.name} is for {space.stage}/{space.method}, the sweep is {stage}/{method} (pick the matching space)",
        )
    return space


def _scheduler(section: Reader) -> Scheduler:
    interval = section.number("rung_interval", low=1, integer=True)
    max_steps = section.number("max_steps", low=1, integer=True)
    factor = section.number("reduction_factor", 3.0, low=1.0, high=16.0, low_open=True)
    section.finish()
    if interval and max_steps and interval > max_steps:
        section.problems.add("scheduler.rung_interval", f"must be <= scheduler.max_steps ({max_steps}), got {interval}")
    return Scheduler(interval or 1, max_steps or 1, factor)


def _training(section: Reader, scheduler: Scheduler) -> Training:
    training = Training(
        batch_size=section.number("batch_size", Training.batch_size, low=1, integer=True),
        grad_accum=section.number("grad_accum", Training.grad_accum, low=1, integer=True),
        max_seq_len=section.number("max_seq_len", Training.max_seq_len, low=16, integer=True),
        max_steps=scheduler.max_steps,
        rung_interval=scheduler.rung_interval,
    )
    section.finish()
    return training


def _probes(section: Reader) -> Probes:
    probes = Probes(
        domain_examples=section.number("domain_examples", Probes.domain_examples, low=1, integer=True),
        general_passages=section.number("general_passages", Probes.general_passages, low=1, integer=True),
        instruction_examples=section.number("instruction_examples", Probes.instruction_examples, low=1, integer=True),
        max_new_tokens=section.number("max_new_tokens", Probes.max_new_tokens, low=1, integer=True),
    )
    section.finish()
    return probes


def _objective(section: Reader) -> Objective:
    objective = Objective(
        general_weight=section.number("general_weight", Objective.general_weight, low=0.0),
        max_general_regression=section.number("max_general_regression", Objective.max_general_regression, low=0.0),
    )
    section.finish()
    return objective


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
    )
    section.finish()
    return resources


def _searcher(section: Reader, seed: int) -> Searcher:
    searcher = Searcher(
        seed=section.number("seed", seed, low=0, integer=True),
        startup_trials=section.number("startup_trials", Searcher.startup_trials, low=1, integer=True),
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
