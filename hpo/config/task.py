"""The sweep file's `task` section: the labels, how answers are scored, the RFT reward.

    task:
      labels: [noun.act, noun.artifact]   # optional: every reference must be one; adds parse rate and chance
      metric: token_f1                    # a built-in scorer, "package.module:function", or {url: ...}
      pattern: '^\\d{4}$'                 # the regex scorer's (a row's own `pattern` field wins)
      system_prompt: ""                   # optional system turn before every prompt
      reward: {scorer: exact_match}       # rft: a scorer, {url: ...}, or {callable: ...} (a TRL reward function)
      min_lift: 0.05                      # the smallest lift over max(base, majority class) that matters (default 0)

What a stage needs of it is the stage's (`Stage.read_task` asks `TaskSection` for each part):
a stage that scores answers takes any scorer as `metric`; the others accept only their own
metric's name. A scorer that cannot
score the references (json_match on references that are not JSON objects, regex without a
pattern) is reported here, before anything runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hpo.config.errors import Problems
from hpo.config.reader import Reader
from trainers.data import readable_rows
from trainers.recipe import EXACT_MATCH, Scoring
from trainers.scorers import BUILTIN_SCORERS, RESERVED_KEYS, import_scorer, reference_problems
from trainers.stages import Stage

MAX_REPORTED_ROWS = 3


@dataclass(frozen=True)
class Task:
    labels: tuple[str, ...]
    metric: Scoring
    reward: Scoring | None
    system_prompt: str | None
    min_lift: float = 0.0  # the verdict's: a lift beyond the noise below it is "learned, below the lift you asked for"


class TaskSection:
    """The `task` section as a stage asks for it (trainers.stage.TaskFields): each method reads one part,
    checked, into the Task it gives; what no stage asks for is reported as an unknown key."""

    def __init__(self, top: Reader, base: Path, stage: Stage) -> None:
        self.top, self.root, self.stage = top, str(base.resolve()), stage
        self.given = top.has("task") and top.data["task"] is not None
        self.section = top.section("task")
        self.pattern = self.section.text("pattern", None) or None
        self.task = Task((), EXACT_MATCH, None, None)

    def require(self) -> None:
        if not self.given:
            self.top.raw("task")  # reported as required when the top level finishes
            self.section.present = False  # its own required keys are not reported again

    def labels(self) -> None:
        task = self.section
        labels = task.texts("labels", None)
        if task.data.get("labels") == []:
            task.problems.add(task.key("labels"), "must list at least one label (or remove it: any answer is allowed)")
        if len(set(labels)) != len(labels):
            task.problems.add(task.key("labels"), "must not repeat a label")
        self.task = dataclasses.replace(self.task, labels=labels)

    def scorer(self) -> None:
        self.task = dataclasses.replace(self.task, metric=read_metric(self.section, self.pattern, self.root))
        self.pattern = None  # the scorer's to use

    def own_metric(self, name: str) -> None:
        self.section.text("metric", name, choices=(name,))

    def reward(self) -> None:
        self.task = dataclasses.replace(self.task, reward=read_reward(self.section.section("reward", required=True), self.root))

    def finish(self) -> Task:
        if self.pattern is not None:
            self.section.problems.add(
                self.section.key("pattern"), f"only a regex scorer uses it (stage {self.stage.name} scores no answers)"
            )
        system_prompt = self.section.text("system_prompt", None) if self.section.has("system_prompt") else None
        min_lift = self.section.number("min_lift", 0.0, low=0.0)
        self.section.finish()
        return dataclasses.replace(self.task, system_prompt=system_prompt, min_lift=min_lift)


def read_task(top: Reader, base: Path, stage: Stage) -> Task:
    """The task section, as the stage reads it (`Stage.read_task`); problems go to `top.problems`."""
    section = TaskSection(top, base, stage)
    stage.read_task(section)
    return section.finish()


def read_metric(task: Reader, pattern: str | None, root: str) -> Scoring:
    """`task.metric`: the scorer answers are judged by (a built-in, "package.module:name" or {url: ...})."""
    raw = task.raw("metric", EXACT_MATCH.scorer)
    if isinstance(raw, dict):
        section = Reader(raw, task.problems, task.key("metric"))
        scoring = read_endpoint(section, root)
        section.finish()  # a url is required, and a stray key is reported
        return scoring
    if not isinstance(raw, str):
        task.problems.add(task.key("metric"), f"must be a scorer name or {{url: ...}}, got {raw!r}")
        return EXACT_MATCH
    scoring = Scoring(scorer=raw, pattern=pattern, import_root=root)
    check_scorer_name(task.problems, task.key("metric"), scoring)
    if pattern is not None and raw != "regex":
        task.problems.add(task.key("pattern"), f"only the regex scorer uses it, the metric is '{raw}' (remove it)")
    return scoring


def check_scorer_name(problems: Problems, key: str, scoring: Scoring) -> None:
    """A built-in scorer's name, or an importable "package.module:function"."""
    name = scoring.scorer or ""
    if name in BUILTIN_SCORERS:
        if scoring.pattern is not None:
            check_pattern(problems, key.rsplit(".", 1)[0] + ".pattern", scoring.pattern)
        return
    if ":" not in name:
        close = difflib.get_close_matches(name, BUILTIN_SCORERS, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        problems.add(
            key,
            f"unknown scorer '{name}' ({hint}built-in: {', '.join(BUILTIN_SCORERS)}; "
            "or package.module:function, or {url: ...})",
        )
        return
    try:
        import_scorer(name, scoring.import_root)
    except ValueError as err:
        problems.add(key, f"{err} (fix the name, or the module next to the sweep file)")
        return
    if scoring.metric_key in RESERVED_KEYS:
        problems.add(
            key,
            f"a scorer named '{scoring.metric_key}' would report domain_{scoring.metric_key}, which the probe "
            "reports already (rename it)",
        )


def check_pattern(problems: Problems, key: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as err:
        problems.add(key, f"is not a valid regular expression ({err}), got {pattern!r}")


def read_endpoint(section: Reader, root: str, **fields: str | None) -> Scoring:
    """`{url: ..., concurrency, timeout_s, retries}`: an HTTP scorer."""
    url = section.text("url") or None
    scoring = Scoring(
        url=url,
        import_root=root,
        concurrency=section.number("concurrency", Scoring.concurrency, low=1, integer=True),
        timeout_s=section.number("timeout_s", Scoring.timeout_s, low=0.0, low_open=True),
        retries=section.number("retries", Scoring.retries, low=0, integer=True),
        **fields,
    )
    if url and not url.startswith(("http://", "https://")):
        section.problems.add(section.key("url"), f"must start with http:// or https://, got '{url}'")
    elif url and not urlsplit(url).hostname:
        section.problems.add(section.key("url"), f"has no host, got '{url}' (e.g. https://scores.example.com/score)")
    return scoring


def read_reward(section: Reader, root: str) -> Scoring:
    """`task.reward`: `{scorer: ...}`, `{url: ...}` or `{callable: "package.module:function"}` (TRL's signature)."""
    given = [key for key in ("scorer", "callable", "url") if section.has(key)]
    if section.data and len(given) != 1:
        section.problems.add(
            section.prefix,
            "must give exactly one of scorer, callable or url (e.g. scorer: exact_match, "
            "or callable: trainers.rewards:exact_match)",
        )
    scorer, name = section.text("scorer", None) or None, section.text("callable", None) or None
    pattern = section.text("pattern", None) or None
    if section.has("url"):
        reward = read_endpoint(section, root, pattern=pattern)
    else:
        settings = {key: section.raw(key, None) for key in ("concurrency", "timeout_s", "retries")}
        reward = Scoring(scorer=scorer, callable=name, pattern=pattern, import_root=root)
        if any(value is not None for value in settings.values()):
            section.problems.add(section.prefix, "concurrency, timeout_s and retries are a url's settings (remove them)")
    section.finish()
    if scorer is not None and len(given) == 1:
        check_scorer_name(section.problems, section.key("scorer"), reward)
    elif name is not None and len(given) == 1:
        check_reward_callable(section, name, root)
    return reward


def check_reward_callable(section: Reader, name: str, root: str) -> None:
    from trainers.rewards import import_callable  # imports the user's module: only for RFT sweeps

    try:
        import_callable(name, root)
    except ValueError as err:
        section.problems.add(section.key("callable"), f"{err} (fix the name, or the module next to the sweep file)")


def reference_lines(path: Path, key: str, scoring: Scoring) -> list[str]:
    """Lines naming the file and key for rows whose reference the scorer cannot score: one line when
    every row has the same problem, else one per row (up to a few)."""
    where = f"{path}: {key}"
    rows, unreadable = readable_rows(path, where)
    if unreadable:
        return []  # the row checks report it
    found = reference_problems(scoring, rows)
    fix = f"scorer {scoring.scorer}; fix the rows, or pick a scorer that fits the answers"
    if found and len(found) == len(rows) and len({problem for _, problem in found}) == 1:
        return [f"{where}: every row: {found[0][1]} ({fix})"]
    lines = [f"{where}: row {n}: {problem} ({fix})" for n, problem in found[:MAX_REPORTED_ROWS]]
    if len(found) > MAX_REPORTED_ROWS:
        lines.append(f"{where}: {len(found) - MAX_REPORTED_ROWS} more rows the scorer cannot score")
    return lines
