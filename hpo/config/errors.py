"""User-input errors, collected and reported together.

Every problem is one line that names the file, the key and the fix; the CLI prints
them all and exits with code 2 before anything is started or written.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

EXIT_NO_PASSING = 1  # the sweep ran, but no trial has a passing rung
EXIT_NOT_LEARNED = 1  # `--require-learned`: the best recipe's verdict does not pass
EXIT_BAD_INPUT = 2
EXIT_TRIAL_ERRORS = 3  # a best recipe was written, but trials of the budget failed or never ran


class InputError(ValueError):
    """One or more problems with user input, each a complete line."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Problems:
    """Collects problems for one file so that all of them are reported at once."""

    def __init__(self, source: Path | str) -> None:
        self.source = str(source)
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        where = f"{self.source}: {key}" if key else self.source
        self.lines.append(f"{where}: {message}")

    def extend(self, other: Problems | list[str]) -> None:
        self.lines.extend(other.lines if isinstance(other, Problems) else other)

    def raise_if_any(self) -> None:
        if self.lines:
            raise InputError(self.lines)

    def __bool__(self) -> bool:
        return bool(self.lines)


def unknown_key_message(key: str, known: Iterable[str]) -> str:
    """`unknown key 'lora_rnk' (did you mean 'lora_rank'?)`, or the list of known keys."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}' (did you mean '{close[0]}'?)"
    return f"unknown key '{key}' (known keys: {', '.join(known)})"
