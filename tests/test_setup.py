"""Set-up that is true on a fresh machine, not only in CI.

README's test command failed after README's install command (pytest and ruff come only with
the `dev` extra), the dependency floors were below what the libraries the engine drives need,
CI installed torch without naming the CPU index, and nothing pinned Ray or TRL between runs.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def readme_command(marker: str) -> str:
    """The bash block after `marker` in README.md, as .ci/run reads it."""
    text = (ROOT / "README.md").read_text()
    return re.search(re.escape(marker) + r"\s*```bash\n(.*?)\n```", text, re.S).group(1)


def dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def floor(requirement: Requirement) -> Version | None:
    lows = [Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", "==")]
    return max(lows, default=None)


def test_the_readme_test_command_installs_what_it_runs():
    command = readme_command("<!-- test-command -->")
    install, *rest = command.split(" && ")
    assert install.startswith("pip install -e '.[dev]'"), command
    assert "ruff check ." in rest and any(step.startswith("python -m pytest") for step in rest)
    tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]  # it exists


def test_ci_installs_the_cpu_build_with_pinned_versions():
    ci = (ROOT / ".ci" / "run").read_text()
    torch_line = next(line for line in ci.splitlines() if "install" in line and "torch==" in line)
    assert f"--extra-index-url {CPU_INDEX}" in torch_line  # a local CPU wheel still satisfies it offline
    assert ci.count("-c constraints.txt") >= 2 and "torch.version.cuda" in ci
    assert f"--extra-index-url {CPU_INDEX}" in readme_command(
        "over the WordNet supersense demo task, on embedded Ray on this machine:"
    )


def test_every_dependency_is_pinned_within_its_range():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = Version(version)
    for requirement in dependencies():
        name = requirement.name.lower()
        assert name in pins, f"constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name], requirement)
    for name in ("pytest", "ruff"):
        assert name in pins


def test_floors_are_no_lower_than_what_the_dependencies_need():
    """torch >= 2.4 was stated while accelerate needs 2.6 (and the code uses torch.OutOfMemoryError)."""
    ours = {requirement.name.lower(): requirement for requirement in dependencies()}
    for dependent in ours:
        try:
            needs = metadata.requires(dependent) or []
        except metadata.PackageNotFoundError:
            continue
        for line in needs:
            requirement = Requirement(line)
            name = requirement.name.lower()
            if name not in ours or (requirement.marker and "extra" in str(requirement.marker)):
                continue
            theirs, mine = floor(requirement), floor(ours[name])
            if theirs is not None:
                assert mine is not None and mine >= theirs, f"{name} >= {mine}, but {dependent} needs {requirement}"
