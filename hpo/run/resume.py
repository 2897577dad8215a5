"""`hpo resume RUN_DIR`: which sweep a run directory belongs to, and whether it may go on.

The sweep file is the one spec.yaml names (or `--sweep FILE`), loaded again and
compared with the config spec.yaml recorded: a resumed sweep must be the same sweep.
What it goes on with is the sweep's own record (hpo.run.sweep.resume_sweep).
Any difference in the resolved config, its search space or its data refuses the
resume, one line per differing dotted key, before anything starts or is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hpo.config.errors import InputError
from hpo.config.pipeline_file import is_pipeline
from hpo.config.sweep_file import SweepConfig, data_hashes, load_sweep
from hpo.results.rundir import RunDir

# Where a sweep file and its runs live may change; what it runs may not (as in SweepConfig.spec_hash).
UNCOMPARED = ("path", "output_dir")
QUICK_SUFFIX = "-quick"  # the name `hpo sweep --quick` gives its runs


def read_spec(run_dir: Path) -> dict[str, Any]:
    run = RunDir(run_dir)
    run.require(run.spec.name)
    if not run.baseline.is_file():
        raise InputError([f"{run_dir}: no trials were started here (run `hpo sweep` again instead)"])
    return run.read_spec()


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """Plain YAML data (tuples become lists) without the location keys, parameters keyed by name."""
    plain = yaml.safe_load(yaml.safe_dump(config, sort_keys=False))
    for key in UNCOMPARED:
        plain.pop(key, None)
    space = plain.get("space") or {}
    space["parameters"] = {p["name"]: p for p in space.get("parameters") or []}
    return plain


def differences(recorded: Any, current: Any, key: str = "") -> list[str]:
    """The dotted keys where `current` differs from `recorded`, each with both values."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        found = []
        for name in sorted(set(recorded) | set(current), key=str):
            found += differences(recorded.get(name), current.get(name), f"{key}.{name}" if key else str(name))
        return found
    if recorded != current:
        return [f"{key}: the run has {recorded!r}, the sweep file now gives {current!r}"]
    return []


def config_differences(spec: dict[str, Any], config: SweepConfig) -> list[str]:
    found = differences(comparable(spec["config"]), comparable(config.resolved()))
    return found + differences(spec["data_sha256"], data_hashes(config.recipe.data, config.recipe.general), "data_sha256")


def load_resumable(run_dir: Path, sweep_file: Path | None = None) -> SweepConfig:
    """The sweep `run_dir` belongs to; InputError when the sweep file no longer describes it."""
    spec = read_spec(run_dir)
    sweep_file = Path(sweep_file or spec.get("sweep_file") or spec["config"]["path"])
    if is_pipeline(sweep_file):
        raise InputError(
            [f"{sweep_file}: a pipeline of stages; `hpo resume` finishes single sweeps (run the pipeline again)"]
        )
    config = load_sweep(sweep_file)
    found = config_differences(spec, config)
    if found and spec["config"]["name"] == config.name + QUICK_SUFFIX:  # the run was `hpo sweep --quick`
        config = load_sweep(sweep_file, quick=True)
        found = config_differences(spec, config)
    if found:
        fix = "resume with the sweep file the run started with (--sweep FILE), or start a new sweep"
        raise InputError([f"{RunDir(run_dir).spec}: {line} ({fix})" for line in found])
    return config
