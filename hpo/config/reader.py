"""Typed reading of a YAML mapping with every problem collected, not raised one by one.

A `Reader` hands out typed values for the keys a section allows and, on `finish()`,
reports the keys nobody asked for as unknown (with the closest known key). A required key
that is missing is reported then too, unless an unknown key looks like a typo of it (the
unknown key's line already says "did you mean"), and a section that is itself missing
reports nothing about its own keys: one mistake, one line.

`load_yaml` refuses a mapping that gives a key twice (YAML would keep the last one
silently) and names the line of a byte that is not UTF-8.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import yaml

from hpo.config.errors import Problems, unknown_key_message
from trainers.recipe import yaml_problem

_MISSING: Any = object()


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that records every key a mapping gives twice (with its line) instead of keeping the last."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                self.duplicates.append((str(key), key_node.start_mark.line + 1))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def utf8_problem(data: bytes) -> str:
    """Where a file stops being UTF-8 text, by line and column."""
    try:
        data.decode("utf-8")
        return ""
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        return f"line {line}, column {column}: byte 0x{data[err.start]:02x} is not UTF-8 text (save the file as UTF-8)"


def load_yaml(path: Path, problems: Problems) -> Any:
    """The parsed document, or None with a problem recorded (one per key given twice)."""
    if path.is_dir():
        problems.add("", "is a folder, not a file (give the YAML file inside it)")
        return None
    if not path.is_file():
        problems.add("", f"file not found (check the path; resolved to {path.resolve()})")
        return None
    data = path.read_bytes()
    if problem := utf8_problem(data):
        problems.add("", problem)
        return None
    loader = UniqueKeyLoader(data.decode("utf-8"))
    try:
        document = loader.get_single_data()
    except yaml.YAMLError as err:
        problems.add("", yaml_problem(err))
        return None
    finally:
        loader.dispose()
    for key, line in loader.duplicates:
        problems.add(key, f"given twice (again at line {line}); YAML would keep only the last one (remove one)")
    return None if loader.duplicates else document


class Reader:
    """Reads one mapping; `prefix` is the dotted path used in messages."""

    def __init__(self, data: Any, problems: Problems, prefix: str = "", present: bool = True) -> None:
        self.problems = problems
        self.prefix = prefix
        self.present = present  # False: a required section that is missing (already reported)
        self.used: set[str] = set()
        self.missing: list[str] = []  # required keys not given, reported by finish()
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
        if default is _MISSING and name not in self.missing:
            self.missing.append(name)
        return None if default is _MISSING else default

    def section(self, name: str, required: bool = False) -> Reader:
        value = self.raw(name, _MISSING if required else {})
        given = name in self.data and self.data[name] is not None
        return Reader(value, self.problems, self.key(name), present=self.present and (given or not required))

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
        invalid = None if default is _MISSING else default  # nothing to check further against: no knock-on lines
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            self.problems.add(self.key(name), f"must be {kind}, got {value!r}")
            return invalid
        if isinstance(value, float) and not math.isfinite(value):
            self.problems.add(self.key(name), f"must be finite, got {value!r}")
            return invalid
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
        elif must_exist and path.is_dir():
            self.problems.add(self.key(name), f"is a folder, not a file: {value} (give the file inside it)")
        return path

    def finish(self) -> None:
        unknown = [name for name in self.data if name not in self.used]
        for name in unknown:
            self.problems.add(self.key(name), unknown_key_message(name, self.used))
        if not self.present:
            return
        for name in self.missing:
            if not difflib.get_close_matches(name, [str(key) for key in unknown], n=1, cutoff=0.6):
                self.problems.add(self.key(name), "is required (add it)")


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
