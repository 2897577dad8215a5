"""Shared fixtures: a tiny model, data and sweep file, built once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Nothing may come from a model hub; caches stay inside the test session.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SLOW = os.environ.get("FORGE_HPO_SLOW") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` (minutes of CPU, each a deeper variant of a scenario a default test covers) run
    only with FORGE_HPO_SLOW=1, so that the default run stays within the time CI gives it."""
    if SLOW:
        return
    skip = pytest.mark.skip(reason="slow: run with FORGE_HPO_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("forge-cache")
    os.environ["FORGE_HPO_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny example (model, data, space, sweep.yaml), built once; copy before changing."""
    from hpo.tiny import make_example

    folder = tmp_path_factory.mktemp("tiny-source")
    make_example(folder)
    return folder


@pytest.fixture
def tiny(tiny_source: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny example that a test may edit."""
    target = tmp_path / "tiny"
    shutil.copytree(tiny_source, target)
    return target


@pytest.fixture(scope="session")
def tiny_run(tiny_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished `hpo sweep` of the tiny example (W&B offline, the default), shared by the CLI, report,
    export and tracking tests; what it printed is in `sweep.out` beside the run directory. Tests may
    write report/ and re-export best/; nothing else changes it."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("tiny-run") / "tiny"
    shutil.copytree(tiny_source, folder)
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "sweep", "sweep.yaml"], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (folder / "runs").iterdir()
    (run_dir.parent / "sweep.out").write_text(done.stdout)
    return run_dir


RESUME_FILES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "complete.json"}


@pytest.fixture
def interrupted_and_resumed(tmp_path: Path):
    """Runs a stage's `train` whole, then again from its first rung's checkpoint.

    Returns the rung metrics of both runs and the first rung's step; every checkpoint
    handed to `report` is checked to be a complete trainer state.
    """
    from trainers.checkpoints import is_complete

    def run(train, recipe):
        whole = {}

        def report(step, metrics, checkpoint):
            assert is_complete(checkpoint) and RESUME_FILES <= {p.name for p in checkpoint.iterdir()}
            shutil.copytree(checkpoint, tmp_path / str(step))
            whole[step] = metrics

        train(recipe, report)
        first = min(whole)
        resumed = {}
        train(
            recipe, lambda step, metrics, checkpoint: resumed.update({step: metrics}), resume_from=tmp_path / str(first)
        )
        return whole, resumed, first

    return run
