"""The domain splits checked against each other before anything runs: a held-out split must hold rows
that training never saw, or its score measures memory instead of learning.

Rows are compared on the fields the stage reads (prompt and completion, or text), exactly and
after normalising (case folded, punctuation dropped, whitespace collapsed):

- an error when two splits are the same file, or when more than half of a split's rows are in
  an earlier one (eval in train; test in train or eval);
- a warning with the counts when some are;
- and, for `hpo validate`, each split's size and, for a label task, its label distribution.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers.data import read_jsonl
from trainers.recipe import DataPaths, Recipe
from trainers.stages import STAGES

SPLITS = ("domain_train", "domain_eval", "domain_test")
# (a split, an earlier split it must not repeat): the search scores eval, the verdict test.
PAIRS = (("domain_eval", "domain_train"), ("domain_test", "domain_train"), ("domain_test", "domain_eval"))
MOSTLY_SHARED = 0.5  # above this share of a split's rows in another split, it is not held out at all
NOT_WORD = re.compile(r"[^\w\s]")
NORMALISED = "after folding case, punctuation and spaces"
SHOWN_LABELS = 8  # a split's label counts shown by hpo validate


def exact_key(row: Mapping[str, Any], fields: Sequence[str]) -> str:
    return json.dumps([row.get(f) for f in fields], ensure_ascii=False)


def normalised_key(row: Mapping[str, Any], fields: Sequence[str]) -> str:
    return json.dumps([" ".join(NOT_WORD.sub(" ", str(row.get(f, "")).casefold()).split()) for f in fields])


@dataclass(frozen=True)
class Overlap:
    """What one split shares with an earlier one."""

    split: str
    other: str
    rows: int  # the split's rows
    exact: int  # its rows also in the other split as they are
    normalised: int  # its rows in the other split only once normalised
    same_file: bool = False

    @property
    def shared(self) -> int:
        return self.exact + self.normalised

    @property
    def is_error(self) -> bool:
        return self.same_file or self.shared > MOSTLY_SHARED * self.rows

    def counts(self) -> str:
        return f"{self.exact} exactly, {self.normalised} {NORMALISED}"

    def message(self, other_path: str) -> str:
        if self.same_file:
            return (
                f"is the same file as data.{self.other} ({other_path}): a held-out split must hold rows "
                "training never saw (give it a file of its own)"
            )
        share = f"{self.shared} of {self.rows} rows ({self.shared / self.rows:.0%})"
        if self.is_error:
            return (
                f"{share} are also in data.{self.other} ({self.counts()}): its score would measure memory, "
                "not learning (give it rows the other split does not hold)"
            )
        return (
            f"{share} are also in data.{self.other} ({self.counts()}): they flatter its score "
            "(remove them from one of the files)"
        )


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def overlaps(paths: Mapping[str, Path | str | None], fields: Sequence[str]) -> list[Overlap]:
    """What each split shares with the earlier ones; splits that are missing or unreadable are skipped."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in SPLITS:
        path = paths.get(name)
        if path is not None and Path(path).is_file():
            try:
                rows[name] = read_jsonl(Path(path))
            except ValueError:  # the row checks report it
                continue
    found = []
    for split, other in PAIRS:
        if split not in rows or other not in rows or not rows[split]:
            continue
        if same_file(Path(paths[split]), Path(paths[other])):  # type: ignore[arg-type]
            found.append(Overlap(split, other, len(rows[split]), len(rows[split]), 0, same_file=True))
            continue
        exact = {exact_key(r, fields) for r in rows[other]}
        loose = {normalised_key(r, fields) for r in rows[other]}
        in_exact = sum(exact_key(r, fields) in exact for r in rows[split])
        in_loose = sum(normalised_key(r, fields) in loose for r in rows[split] if exact_key(r, fields) not in exact)
        if in_exact or in_loose:
            found.append(Overlap(split, other, len(rows[split]), in_exact, in_loose))
    return found


def split_problems(
    paths: Mapping[str, Path | str | None], fields: Sequence[str]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(errors, warnings), each as (key, message): `data.domain_test`, what it shares and the fix."""
    errors, warnings = [], []
    for overlap in overlaps(paths, fields):
        found = (f"data.{overlap.split}", overlap.message(str(paths[overlap.other])))
        (errors if overlap.is_error else warnings).append(found)
    return errors, warnings


def split_warnings(path: str, recipe: Recipe) -> list[str]:
    """`FILE: data.domain_test: 3 of 150 rows are also in data.domain_train (...)` for rows shared short of
    an error; `path` is the sweep file's."""
    _, warnings = split_problems(domain_paths(recipe.data), STAGES[recipe.stage].row_fields)
    return [f"{path}: {key}: {message}" for key, message in warnings]


def domain_paths(data: DataPaths) -> dict[str, str | None]:
    return {name: getattr(data, name) for name in SPLITS}


def split_summary(paths: Mapping[str, Path | str | None], labels: Sequence[str]) -> list[str]:
    """Each split's size and, for a label task, how its references spread over the labels (the most
    frequent SHOWN_LABELS of a longer label set)."""
    lines = []
    for name in SPLITS:
        path = paths.get(name)
        if path is None:
            continue
        rows = read_jsonl(Path(path))
        line = f"data.{name}: {len(rows)} rows"
        if labels and rows:
            counts = Counter(row.get("completion") for row in rows)
            shown = (
                labels
                if len(labels) <= SHOWN_LABELS
                else sorted(labels, key=lambda label: -counts[label])[:SHOWN_LABELS]
            )
            line += "; labels " + ", ".join(
                f"{label} {counts[label]} ({counts[label] / len(rows):.0%})" for label in shown
            )
            line += f", {len(labels) - len(shown)} more" if len(shown) < len(labels) else ""
        lines.append(line)
    return lines
