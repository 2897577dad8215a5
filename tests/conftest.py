"""Shared fixtures: a tiny model, data and sweep file, built once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Nothing may come from a model hub; caches stay inside the test session.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
