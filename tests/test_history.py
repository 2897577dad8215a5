"""A warm start's histories (hpo/search/history.py): which earlier runs a sweep file may name, and what is read from them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpo.config.errors import InputError
from hpo.config.sweep_file import load_sweep
from hpo.search.history import read_history


def earlier_run(tiny_run: Path, tiny: Path, name: str = "earlier", **recipe: str) -> Path:
    """A copy of the tiny sweep's finished run inside the `tiny` copy, recorded as a sweep of this copy's
    model (the copies live in different folders), with `recipe` keys changed."""
    target = tiny / "runs" / name
    shutil.copytree(tiny_run, target, ignore=shutil.ignore_patterns("tune", "wandb", "best", "report"))
    spec = yaml.safe_load((target / "spec.yaml").read_text())
    spec["config"]["recipe"].update({"model": load_sweep(tiny / "sweep.yaml").recipe.model, **recipe})
    (target / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return target


def with_warm_start(tiny: Path, *entries: str) -> Path:
    path = tiny / "sweep.yaml"
    document = yaml.safe_load(path.read_text())
    document["searcher"] = {**(document.get("searcher") or {}), "warm_start": list(entries)}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_a_warm_start_names_earlier_runs_by_path_or_glob(tiny_run, tiny):
    first, second = earlier_run(tiny_run, tiny, "a-1"), earlier_run(tiny_run, tiny, "a-2")
    config = load_sweep(with_warm_start(tiny, "runs/a-*", "runs/a-1"))
    assert config.searcher.warm_start == (str(first.resolve()), str(second.resolve()))  # once each, sorted


def test_the_history_holds_every_trial_its_values_and_its_best_passing_score(tiny_run):
    history = read_history(tiny_run)
    rows = yaml.safe_load((tiny_run / "spec.yaml").read_text())["config"]["budget"]["trials"]
    assert len(history.trials) == rows and history.source == str(tiny_run)
    best = history.best_trials()[0]
    assert best.best == max(t.best for t in history.trials if t.best is not None)
    assert set(best.params) >= {"learning_rate", "lora_rank"} and best.values
    assert all(step % 4 == 0 for trial in history.trials for step in trial.values)  # the tiny sweep's rung interval


@pytest.mark.parametrize(
    "change,message",
    [
        ({"model": "/elsewhere/another-model"}, "a sweep of model /elsewhere/another-model"),
        ({"stage": "cpt"}, "a sweep of stage cpt, this one's is sft"),
        ({"method": "full"}, "a sweep of method full, this one's is lora"),
    ],
)
def test_a_history_of_another_model_stage_or_method_is_refused(tiny_run, tiny, change, message):
    earlier_run(tiny_run, tiny, **change)
    with pytest.raises(InputError) as refused:
        load_sweep(with_warm_start(tiny, "runs/earlier"))
    (line,) = refused.value.problems
    assert f"searcher.warm_start[0]: {(tiny / 'runs' / 'earlier').resolve()}: {message}" in line
    assert "warm-start only from sweeps of the same model, stage and method" in line


def test_hpo_validate_refuses_a_history_with_one_line_and_exit_code_2(tiny_run, tiny):
    earlier_run(tiny_run, tiny, model="/elsewhere/another-model")
    with_warm_start(tiny, "runs/earlier", "runs/none-*")
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "validate", "sweep.yaml"], cwd=tiny, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert lines[0].startswith("error: sweep.yaml: searcher.warm_start[0]: ")  # the file as it was given
    assert lines[1].startswith("error: sweep.yaml: searcher.warm_start[1]: no run directory at runs/none-*")
