"""Typed reading of a YAML mapping with every problem collected, not raised one by one.

A `Reader` hands out typed values for the keys a section allows and, on `finish()`,
reports the keys nobody asked for as unknown (with the closest known key).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from hpo.errors import Problems, unknown_key_message
from trainers.recipe import yaml_problem

_MISSING: Any = object()


def load_yaml(path: Path, problems: Problems) -> Any:
    """The parsed document, or None with a problem recorded."""
    if not path.is_file():
        problems.add("", f"file not found (check the path; resolved to {path.resolve()})")
        return None
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        problems.add("", yaml_problem(err))
        return None


class Reader:
    """Reads one mapping; `prefix` is the dotted path used in messages."""

    def __init__(self, data: Any, problems: Problems, prefix: str = "") -> None:
        self.problems = problems
        self.prefix = prefix
        self.used: set[str] = set()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.add(prefix or "(top level)", f"must be a mapping of keys to values, got {type(data).__name__}")
            data = {}
        self.data: dict[str, Any] = data

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self.used.add(name)
        if name in self.data and self.data[name] is not None:
            return self.data[name]
        if default is _MISSING:
            self.problems.add(self.key(name), "is required (add it)")
        return None if default is _MISSING else default

    def section(self, name: str, required: bool = False) -> Reader:
        value = self.raw(name, _MISSING if required else {})
        return Reader(value, self.problems, self.key(name))

    def text(self, name: str, default: Any = _MISSING, choices: tuple[str, ...] = ()) -> str:
        value = self.raw(name, default)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.problems.add(self.key(name), f"must be a string, got {value!r}")
            return ""
        if choices and value not in choices:
            self.problems.add(self.key(name), f"must be one of {', '.join(choices)}, got '{value}'")
        return value

    def number(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        low: float | None = None,
        high: float | None = None,
        integer: bool = False,
        low_open: bool = False,
    ) -> Any:
        value = self.raw(name, default)
        if value is None:
            return None
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            self.problems.add(self.key(name), f"must be {kind}, got {value!r}")
            return default if default is not _MISSING else (0 if integer else 0.0)
        if isinstance(value, float) and not math.isfinite(value):
            self.problems.add(self.key(name), f"must be finite, got {value!r}")
            return default if default is not _MISSING else 0.0
        check_range(self.problems, self.key(name), value, low, high, low_open)
        return int(value) if integer else float(value)

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            self.problems.add(self.key(name), f"must be true or false, got {value!r}")
            return default
        return value

    def texts(self, name: str, default: Any = _MISSING) -> tuple[str, ...]:
        value = self.raw(name, default)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.add(self.key(name), f"must be a list of strings, got {value!r}")
            return ()
        return tuple(value)

    def path(self, name: str, base: Path, *, required: bool = True, must_exist: bool = True) -> Path | None:
        value = self.text(name, _MISSING if required else None)
        if not value:
            return None
        path = (base / Path(value).expanduser()).resolve()
        if must_exist and not path.exists():
            self.problems.add(self.key(name), f"file not found: {value} (resolved to {path}; fix the path)")
        return path

    def finish(self) -> None:
        for name in self.data:
            if name not in self.used:
                self.problems.add(self.key(name), unknown_key_message(name, self.used))


def check_range(
    problems: Problems,
    key: str,
    value: float,
    low: float | None,
    high: float | None,
    low_open: bool = False,
) -> None:
    """Record a problem when `value` lies outside [low, high] (or (low, high] if `low_open`)."""
    if low is not None and (value <= low if low_open else value < low):
        sign = ">" if low_open else ">="
        problems.add(key, f"must be {sign} {low:g}, got {value:g}")
    if high is not None and value > high:
        problems.add(key, f"must be <= {high:g}, got {value:g}")
