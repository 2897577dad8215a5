"""The import graph of hpo/ and trainers/: no cycles, and no torch where a sweep file is only read.

Every import statement counts, at the top of a module, inside a function or under
TYPE_CHECKING: a cycle hidden in a function still ties two modules' behaviour together, and
it is how errors and scoring specs ended up beside torch code.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hpo", "trainers")


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if path.stem == "__init__" else parts)] = path
    return files


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports anywhere in it (`from pkg import mod` counts as pkg.mod)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {module: imports_of(path, set(files)) - {module} for module, path in files.items()}


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none (depth-first search)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return path[path.index(imported) :] + [imported]
            if imported not in state and (found := visit(imported)):
                return found
        state[module] = "done"
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return []


def test_the_checker_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) == []


def test_no_module_of_hpo_or_trainers_imports_itself_round_a_cycle():
    graph = import_graph()
    assert {"hpo.config.sweep_file", "trainers.stage", "trainers.shared"} <= set(graph)  # the checker sees the packages
    assert cycle(graph) == [], " -> ".join(cycle(graph))


def test_the_shared_module_imports_nothing_of_the_project():
    assert import_graph()["trainers.shared"] == set()


def test_reading_a_sweep_file_and_the_stage_table_imports_no_torch():
    code = (
        "import sys\n"
        "import hpo.cli, hpo.config.sweep_file, hpo.run.pipeline, trainers.stages\n"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
