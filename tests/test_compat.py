"""hpo.run.compat against the installed Ray and Optuna, and the rule that nothing else reaches into them.

Each name hpo.run.compat keeps still works, or the test names the version that broke it and
what to fix. Every other module of the engine and the trainers uses public API only: no
attribute with a leading underscore on another object, no import from a private module of
Ray or Optuna.
"""

import ast
import importlib.util
from pathlib import Path

import ray

from hpo.run.compat import TOKEN_AUTH_LOGGER

ROOT = Path(__file__).resolve().parent.parent
OWN_OBJECTS = ("self", "cls")
GUARDED = ("ray", "optuna")  # the libraries whose private modules only hpo/run/compat.py may name
PUBLIC_UNDERSCORED = frozenset({"_exit", "_asdict", "_replace", "_fields", "_make"})  # os._exit, namedtuples


def broken(library: str, version: str, name: str, what: str) -> str:
    return f"{library} {version}: hpo.run.compat.{name} no longer works ({what}); fix it for this version"


def test_rays_token_notice_comes_from_the_named_logger():
    spec = importlib.util.find_spec(TOKEN_AUTH_LOGGER)
    assert spec is not None and spec.origin, broken("Ray", ray.__version__, "TOKEN_AUTH_LOGGER", "no such module")
    notice = "Token authentication is enabled for this Ray cluster"  # what hpo.run.sweep.drop_token_auth_notice drops
    assert notice in Path(spec.origin).read_text(), broken(
        "Ray", ray.__version__, "TOKEN_AUTH_LOGGER", "the module no longer logs the notice"
    )


def private_uses(path: Path) -> list[str]:
    """`file:line: code` for every private attribute of another object and every private import."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        private = (
            node.attr.startswith("_") and not node.attr.startswith("__") if isinstance(node, ast.Attribute) else False
        )
        if private and node.attr not in PUBLIC_UNDERSCORED:
            if not (isinstance(node.value, ast.Name) and node.value.id in OWN_OBJECTS):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in GUARDED:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            if any(part.startswith("_") for name in names for part in name.split(".")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_hpo_compat_names_private_api():
    """A resume through Ray's `tuner._local_tuner` or Optuna's `study._storage` broke on upgrade and under a
    Ray Client address; the engine now resumes through public API (hpo.run.sweep.resume_sweep)."""
    modules = sorted((ROOT / "hpo").rglob("*.py")) + sorted((ROOT / "trainers").rglob("*.py"))
    found = [line for path in modules if path.name != "compat.py" for line in private_uses(path)]
    assert not found, "private API outside hpo/run/compat.py:\n" + "\n".join(found)
