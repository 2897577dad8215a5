"""The sweep file's `general` section: the general-capability suite beyond data.general_probe.

    general:
      corpora:                   # more held-out text corpora, perplexity at every rung
        - {name: web, path: data/web_probe.jsonl, passages: 50, weight: 1.0, max_regression: 0.25}
      instruction: {weight: 0.5, max_regression: 0.3}   # data.instruction_probe in the regression
      benchmarks:                # lm-evaluation-harness tasks, base and best at the end
        - {task: mmlu_demo, include: lm_eval_tasks/mmlu_demo.yaml, limit: 200}
        - {task: arc_easy}       # one of lm-eval's own tasks (its data comes from the hub)
      benchmarks_each_trial: false   # also score every trial's last rung on them

Corpora and the instruction probe go into the objective's general regression at their
weight, each failing a rung above its own limit (hpo.search.objective); benchmarks are reported,
not searched on.
"""

from __future__ import annotations

import re
from pathlib import Path

from hpo.config.errors import Problems
from hpo.config.reader import Reader
from hpo.search.objective import GeneralProbe
from trainers.data import TEXT_FIELDS, check_rows
from trainers.recipe import DEFAULT_CORPUS, Benchmark, Corpus, General, corpus_metric

NAME = re.compile(r"[a-z][a-z0-9_]*")


def read_general(top: Reader, base: Path, instruction_probe: str | None) -> tuple[General, tuple[GeneralProbe, ...]]:
    """The suite for the recipe, and the general probes the objective weighs beyond general_perplexity."""
    section = top.section("general")
    corpora, probes = read_corpora(section, base)
    probes += read_instruction(section, instruction_probe)
    benchmarks = read_benchmarks(section, base)
    each_trial = section.flag("benchmarks_each_trial", False)
    section.finish()
    return General(corpora, benchmarks, each_trial), probes


def items(section: Reader, name: str) -> list[Reader]:
    """The mappings listed under `name`, each a Reader keyed `section.name[i]`."""
    raw = section.raw(name, [])
    if not isinstance(raw, list):
        section.problems.add(section.key(name), f"must be a list of mappings, got {raw!r}")
        return []
    return [Reader(item, section.problems, f"{section.key(name)}[{i}]") for i, item in enumerate(raw)]


def read_corpora(section: Reader, base: Path) -> tuple[tuple[Corpus, ...], tuple[GeneralProbe, ...]]:
    corpora, probes = [], []
    for item in items(section, "corpora"):
        name = item.text("name")
        path = item.path("path", base)
        corpus = Corpus(name, str(path), item.number("passages", 30, low=1, integer=True))
        probe = GeneralProbe(
            corpus_metric(name),
            item.number("weight", 1.0, low=0.0),
            item.number("max_regression", None, low=0.0),
        )
        item.finish()
        if name and (not NAME.fullmatch(name) or name == DEFAULT_CORPUS):
            item.problems.add(
                item.key("name"),
                f"must be lower-case letters, digits and _ and not '{DEFAULT_CORPUS}' "
                f"(data.general_probe is '{DEFAULT_CORPUS}'), got '{name}'",
            )
        if name in {c.name for c in corpora}:
            item.problems.add(item.key("name"), f"must not repeat a corpus name, got '{name}'")
        if path is not None and path.is_file():
            item.problems.extend(check_rows(path, item.key("path"), TEXT_FIELDS))
        corpora.append(corpus)
        probes.append(probe)
    return tuple(corpora), tuple(probes)


def read_instruction(section: Reader, instruction_probe: str | None) -> tuple[GeneralProbe, ...]:
    """data.instruction_probe in the regression, when `general.instruction` gives it a weight or a limit."""
    if not section.has("instruction"):
        return ()
    item = section.section("instruction")
    probe = GeneralProbe(
        "instruction_nll",
        item.number("weight", 1.0, low=0.0),
        item.number("max_regression", None, low=0.0),
        nll=True,
    )
    item.finish()
    if instruction_probe is None:
        item.problems.add(item.prefix, "needs data.instruction_probe (add the file, or remove this section)")
    return (probe,)


def read_benchmarks(section: Reader, base: Path) -> tuple[Benchmark, ...]:
    benchmarks = []
    for item in items(section, "benchmarks"):
        include = item.path("include", base, required=False)
        benchmark = Benchmark(
            task=item.text("task"),
            include=str(include) if include else None,
            limit=item.number("limit", None, low=1, integer=True),
            chat_template=item.flag("chat_template", False),
        )
        item.finish()
        if benchmark.task and (include is None or include.exists()):
            check_benchmark(item.problems, item.prefix, benchmark)
        benchmarks.append(benchmark)
    return tuple(benchmarks)


def check_benchmark(problems: Problems, key: str, benchmark: Benchmark) -> None:
    """The task is found (in its local YAML, or among lm-eval's own) and its data files exist."""
    from trainers.harness import benchmark_problem  # imports lm-eval: only when benchmarks are named

    problem = benchmark_problem(benchmark)
    if problem:
        problems.add(key, problem)
