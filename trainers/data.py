"""Reading, checking and mixing the JSONL data a trainer uses.

Domain and general instruction rows are {"prompt", "completion"}; general text rows
are {"text"}. Checks return problem lines instead of raising so that the engine can
report every bad file at once before anything starts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

PROMPT_FIELDS = ("prompt", "completion")
TEXT_FIELDS = ("text",)
MAX_REPORTED_ROWS = 3  # a file with thousands of bad rows still gives a short report


def chat(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """A prompt as chat messages: a user turn, after a system turn when `system_prompt` is not None.

    Without a system turn a chat template may add its own default (SmolLM2's is 20 tokens on
    every example); `system_prompt: ""` replaces it with an empty one.
    """
    system = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    return [*system, {"role": "user", "content": prompt}]


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """All rows of a JSONL file; raises ValueError naming the file and line on bad JSON."""
    rows = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                byte = f"byte 0x{raw[err.start]:02x} at column {err.start + 1}"
                raise ValueError(f"{path}: line {number}: {byte} is not UTF-8 text (save the file as UTF-8)") from err
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {number}: not valid JSON ({err.msg}); fix or remove the line") from err
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {number}: must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def readable_rows(path: Path | str, where: str) -> tuple[list[dict[str, Any]], list[str]]:
    """A data file's rows, or the one problem line that stops checking it: missing, unreadable, empty."""
    if not Path(path).is_file():
        return [], [f"{where}: file not found (fix the path)"]
    try:
        rows = read_jsonl(path)
    except ValueError as err:
        return [], [f"{where}: {err}"]
    if not rows:
        return [], [f"{where}: the dataset is empty (it needs at least one row)"]
    return rows, []


def check_rows(
    path: Path | str,
    key: str,
    fields: tuple[str, ...],
    labels: tuple[str, ...] = (),
) -> list[str]:
    """Problem lines for a data file: unreadable, empty, missing fields, labels outside the set."""
    where = f"{path}: {key}" if key else str(path)
    rows, problems = readable_rows(path, where)
    if problems:
        return problems
    missing = [(n, f) for n, row in enumerate(rows, 1) for f in fields if not isinstance(row.get(f), str)]
    for number, name in missing[:MAX_REPORTED_ROWS]:
        problems.append(f"{where}: row {number}: missing string field '{name}' (each row needs {', '.join(fields)})")
    if labels:
        allowed = set(labels)
        strays = [
            (n, row["completion"])
            for n, row in enumerate(rows, 1)
            if isinstance(row.get("completion"), str) and row["completion"] not in allowed
        ]
        for number, label in strays[:MAX_REPORTED_ROWS]:
            problems.append(
                f"{where}: row {number}: label '{label}' is not in the label set "
                f"({', '.join(labels)}); fix the row or add the label to task.labels"
            )
        if len(strays) > MAX_REPORTED_ROWS:
            problems.append(f"{where}: {len(strays) - MAX_REPORTED_ROWS} more rows with labels outside the set")
    return problems


CHOICE_LETTERS = "ABCDEFGHIJ"


def check_choice_rows(path: Path | str, key: str) -> list[str]:
    """Problem lines for a multiple-choice file: {"question": str, "choices": [str, ...], "answer": index}."""
    where = f"{path}: {key}"
    rows, problems = readable_rows(path, where)
    if problems:
        return problems
    bad = [n for n, row in enumerate(rows, 1) if not is_choice_row(row)]
    return [
        f"{where}: row {n}: needs a string 'question', 2-{len(CHOICE_LETTERS)} string 'choices' "
        f"and an integer 'answer' indexing them (fix the row)"
        for n in bad[:MAX_REPORTED_ROWS]
    ]


def is_choice_row(row: dict[str, Any]) -> bool:
    choices, answer = row.get("choices"), row.get("answer")
    return (
        isinstance(row.get("question"), str)
        and isinstance(choices, list)
        and 2 <= len(choices) <= len(CHOICE_LETTERS)
        and all(isinstance(c, str) for c in choices)
        and isinstance(answer, int)
        and 0 <= answer < len(choices)
    )


def mix(domain: list[dict], general: list[dict], domain_fraction: float, seed: int) -> list[dict]:
    """Every domain row plus enough general rows that domain rows make up `domain_fraction`.

    General rows are drawn without replacement while they last, then cycled, so a small
    general pool still reaches the requested ratio. The result is shuffled with `seed`.
    """
    rng = random.Random(seed)
    wanted = round(len(domain) * (1.0 - domain_fraction) / domain_fraction) if general else 0
    pool = list(general)
    rng.shuffle(pool)
    drawn = [pool[i % len(pool)] for i in range(wanted)] if pool else []
    mixed = list(domain) + drawn
    rng.shuffle(mixed)
    return mixed


def duplicate(rows: list[dict], copies: int) -> list[dict]:
    """`copies` of every row: more passes over a small data set within one epoch's schedule."""
    return [row for _ in range(copies) for row in rows]
