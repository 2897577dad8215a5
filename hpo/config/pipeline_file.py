"""Stage pipelines: sweeps run in order, each stage starting from the best of the one before.

The pipeline file read and split into one sweep config per stage (the run: hpo.run.pipeline)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.config.errors import Problems
from hpo.config.reader import load_yaml
from hpo.config.sweep_file import SweepConfig, overlay, sweep_from_document
from trainers.stages import STAGES

SHARED_ONLY = ("name", "stages", "output_dir")  # pipeline-wide keys a stage section cannot set


@dataclass(frozen=True)
class Pipeline:
    path: str
    name: str
    stages: tuple[SweepConfig, ...]
    output_dir: str


def is_pipeline(path: Path) -> bool:
    """Whether a sweep file lists `stages` (checked without validating anything else)."""
    problems = Problems(path)
    document = load_yaml(Path(path), problems)
    return isinstance(document, dict) and "stages" in document


def stage_document(document: dict[str, Any], stage: str) -> dict[str, Any]:
    """The sweep document of one stage: top-level keys, overridden one level deep by the stage's section."""
    shared = {k: v for k, v in document.items() if k not in ("stages", *STAGES)}
    merged = overlay(shared, document.get(stage) or {})
    merged["name"] = f"{document.get('name') or 'pipeline'}-{stage}"
    merged["stage"] = stage
    return merged


def load_pipeline(path: Path | str) -> Pipeline:
    """Parse and validate every stage of a pipeline file; raises InputError listing every problem."""
    path = Path(path)
    problems = Problems(path)
    document = load_yaml(path, problems)
    problems.raise_if_any()
    if not isinstance(document, dict):
        problems.add("(top level)", f"must be a mapping of keys to values, got {type(document).__name__}")
        problems.raise_if_any()
    stages = document.get("stages")
    if not isinstance(stages, list) or not stages or not all(s in STAGES for s in stages):
        problems.add("stages", f"must be a non-empty list of {', '.join(STAGES)}, got {stages!r}")
    elif len(set(stages)) != len(stages):
        problems.add("stages", f"must not repeat a stage, got {stages}")
    for key in ("stage", *(s for s in STAGES if s in document and s not in (stages or []))):
        if key in document:
            problems.add(key, f"is not allowed in a pipeline (stages come from `stages`: {stages})")
    for stage in stages if isinstance(stages, list) else []:
        section = document.get(stage) or {}
        if not isinstance(section, dict):
            problems.add(stage, f"must be a mapping of the stage's settings, got {type(section).__name__}")
        for key in (*SHARED_ONLY, "stage"):
            if isinstance(section, dict) and key in section:
                problems.add(f"{stage}.{key}", "is pipeline-wide: set it at the top level (remove it here)")
    problems.raise_if_any()
    configs = []
    for stage in stages:
        stage_problems = Problems(f"{path} [{stage}]")
        configs.append(sweep_from_document(stage_document(document, stage), path, stage_problems))
        problems.extend(stage_problems)
    problems.raise_if_any()
    output_dir = str(Path(configs[0].output_dir).resolve())
    return Pipeline(str(path.resolve()), str(document.get("name") or path.stem), tuple(configs), output_dir)
