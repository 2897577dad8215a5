"""Malformed input at every entry point: refused up front, one clear line per problem, nothing started.

Each row edits a private copy of the tiny example (the sweep file, the search space, a
data file, the model folder, a reward setting or the command line), runs the real
command in a subprocess and expects:

- exit code 2 and no traceback;
- exactly one `error:` line per problem, naming the file, the key and the fix
  (a problem with the file as a whole, e.g. broken YAML, names the line instead of a key);
- nothing written into the example (no run directory, no report, no export);
- no Ray session: Ray's temp dir (RAY_TMPDIR, private to the row) is never created.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ERROR_LINE = re.compile(r"^(hpo: )?error: ")  # argparse writes `hpo: error: ...` after its usage lines


@dataclass(frozen=True)
class Problem:
    file: str  # the file's name (or the folder / program the problem is in)
    key: str  # the key, flag or line the problem is at
    message: str  # a distinctive part of the message: what must hold and how to fix it


@dataclass(frozen=True)
class Row:
    make: Callable[[Path], None]  # edits the copy of the tiny example in place
    command: tuple[str, ...]  # `hpo ...` or `trainers ...`, run in the copy's folder
    problems: tuple[Problem, ...]
    env: tuple[tuple[str, str], ...] = ()  # added to the command's environment


# --- how to break the example -------------------------------------------------------------


def edit_yaml(name: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        file = folder / name
        document = yaml.safe_load(file.read_text())
        document = change(document) or document
        file.write_text(yaml.safe_dump(document, sort_keys=False))

    return make


def set_key(name: str, dotted: str, value: Any) -> Callable[[Path], None]:
    def change(document: dict) -> None:
        *parents, last = dotted.split(".")
        node = document
        for part in parents:
            node = node[part]
        node[last] = value

    return edit_yaml(name, change)


def sweep(dotted: str, value: Any) -> Callable[[Path], None]:
    return set_key("sweep.yaml", dotted, value)


def space(dotted: str, value: Any) -> Callable[[Path], None]:
    return set_key("space.yaml", f"parameters.{dotted}", value)


def write_text(name: str, text: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)

    return make


def rows_of(name: str, *rows: Any) -> Callable[[Path], None]:
    """A data file holding `rows` (dicts as JSON, strings as they are)."""
    lines = "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    return write_text(name, lines)


def together(*makes: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        for step in makes:
            step(folder)

    return make


def model_folder(files: dict[str, str]) -> Callable[[Path], None]:
    """A model folder `bad_model/` holding `files`, and the sweep pointing at it."""

    def make(folder: Path) -> None:
        (folder / "bad_model").mkdir()
        for name, text in files.items():
            (folder / "bad_model" / name).write_text(text)

    return together(make, sweep("model", "./bad_model"))


def recipe(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """recipe.yaml, the tiny sweep's base recipe as `hpo export` writes it, then `change`d."""

    def make(folder: Path) -> None:
        from hpo.config.sweep_file import load_sweep
        from trainers.recipe import save_recipe

        save_recipe(folder / "recipe.yaml", load_sweep(folder / "sweep.yaml").recipe)
        edit_yaml("recipe.yaml", change)(folder)

    return make


def fake_run_dir(folder: Path) -> None:
    """A folder with spec.yaml (so it looks like a run) but no trial records."""
    (folder / "half_run").mkdir()
    (folder / "half_run" / "spec.yaml").write_text("spec_hash: 0\n")


def nothing(folder: Path) -> None:
    pass


def append_bytes(name: str, data: bytes) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        with (folder / name).open("ab") as file:
            file.write(data)

    return make


def run_dir_without_baseline(folder: Path) -> None:
    """A run directory whose sweep stopped before its baseline was written."""
    (folder / "early_run").mkdir()
    (folder / "early_run" / "spec.yaml").write_text("spec_hash: 0\n")


def drop_key(name: str, dotted: str, renamed: str) -> Callable[[Path], None]:
    """`dotted` renamed to `renamed` (a typo of a required key)."""

    def change(document: dict) -> None:
        *parents, last = dotted.split(".")
        node = document
        for part in parents:
            node = node[part]
        node[renamed] = node.pop(last)

    return edit_yaml(name, change)


def rft_reward(reward: dict) -> Callable[[Path], None]:
    return set_key("sweep_rft.yaml", "task.reward", reward)


LR = "parameters.learning_rate"

JUDGE_ANSWERS = ("hpo", "judge", "--test", "data/domain_test.jsonl", "--base", "base.txt", "--candidate", "answers.txt")
TWO_ANSWER_FILES = together(write_text("base.txt", "animal\n" * 20), write_text("answers.txt", "animal\n" * 20))

ROWS: dict[str, Row] = {
    # the sweep file
    "sweep file missing": Row(
        nothing, ("hpo", "validate", "no_such_sweep.yaml"), (Problem("no_such_sweep.yaml", "", "file not found"),)
    ),
    "broken YAML": Row(
        write_text("sweep.yaml", "name: x\nbudget: {trials: 2\n"),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "line 3", "broken YAML at line 3, column 1"),),
    ),
    "not a mapping": Row(
        write_text("sweep.yaml", "- name: x\n"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "(top level)", "must be a mapping of keys to values, got list"),),
    ),
    "unknown top-level key": Row(
        sweep("budgett", {"trials": 2}),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "budgett", "unknown key 'budgett' (did you mean 'budget'?)"),),
    ),
    "unknown nested key": Row(
        sweep("scheduler.max_step", 8),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "scheduler.max_step", "unknown key 'max_step' (did you mean 'max_steps'?)"),),
    ),
    "string for a number": Row(
        sweep("budget.trials", "many"),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "budget.trials", "must be an integer, got 'many'"),),
    ),
    "negative trials": Row(
        sweep("budget.trials", -3),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "budget.trials", "must be >= 1, got -3"),),
    ),
    "concurrency 0": Row(
        sweep("budget.concurrency", 0),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "budget.concurrency", "must be >= 1, got 0"),),
    ),
    "reduction factor 1": Row(
        sweep("scheduler.reduction_factor", 1),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "scheduler.reduction_factor", "must be > 1, got 1"),),
    ),
    "unknown stage": Row(
        sweep("stage", "ppo"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "stage", "must be one of sft, cpt, rft, dpo, got 'ppo'"),),
    ),
    "unknown method": Row(
        sweep("method", "qlora"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "method", "must be one of lora, full, got 'qlora'"),),
    ),
    "three problems at once": Row(
        together(
            sweep("budget.concurrency", 0), sweep("scheduler.max_step", 8), sweep("data.general_probe", "no.jsonl")
        ),
        ("hpo", "sweep", "sweep.yaml"),
        (
            Problem("sweep.yaml", "budget.concurrency", "must be >= 1, got 0"),
            Problem("sweep.yaml", "scheduler.max_step", "did you mean 'max_steps'?"),
            Problem("sweep.yaml", "data.general_probe", "file not found: no.jsonl"),
        ),
    ),
    "pipeline with an unknown stage": Row(
        set_key("pipeline.yaml", "stages", ["cpt", "sft", "rft", "ppo"]),
        ("hpo", "sweep", "pipeline.yaml"),
        (
            Problem(
                "pipeline.yaml", "stages", "must be a non-empty list of sft, cpt, rft, dpo, got ['cpt', 'sft', 'rft', 'ppo']"
            ),
        ),
    ),
    # the search space
    "search space missing": Row(
        sweep("search_space", "no_such_space.yaml"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "search_space", "not found: no_such_space.yaml (give a .yaml path or a built-in"),),
    ),
    "search space broken YAML": Row(
        write_text("space.yaml", "parameters:\n  learning_rate: {type: float\n"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", "line 3", "broken YAML at line 3"),),
    ),
    "learning rate low > high": Row(
        space("learning_rate.low", 0.9),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("space.yaml", f"{LR}.low", "`low <= high` must hold, but got (low=0.9, high=0.5)"),),
    ),
    "unknown parameter type": Row(
        space("learning_rate.type", "uniform"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", f"{LR}.type", "must be one of float, int, choice, got 'uniform'"),),
    ),
    "unknown parameter": Row(
        space("learning_rat", {"type": "float", "low": 0.1, "high": 0.2, "default": 0.1}),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", "parameters.learning_rat", "did you mean 'learning_rate'?"),),
    ),
    "choice with empty list": Row(
        space("lora_rank.values", []),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", "parameters.lora_rank.values", "must be a non-empty list, got []"),),
    ),
    "default outside bounds": Row(
        space("warmup_ratio.default", 0.5),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", "parameters.warmup_ratio.default", "must lie in [low, high] = [0, 0.3], got 0.5"),),
    ),
    "log scale from zero": Row(
        space("learning_rate.low", 0.0),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", f"{LR}.low", "must be > 0 for a log range, got 0 (raise it or set log: false)"),),
    ),
    # the data
    "train file missing": Row(
        sweep("data.domain_train", "data/no_such_train.jsonl"),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "data.domain_train", "file not found: data/no_such_train.jsonl"),),
    ),
    "row missing a field": Row(
        rows_of("data/domain_train.jsonl", {"prompt": "Classify the word.\nWord: cat"}),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("domain_train.jsonl", "data.domain_train", "row 1: missing string field 'completion'"),),
    ),
    "malformed JSON line": Row(
        rows_of("data/domain_eval.jsonl", {"prompt": "Word: cat", "completion": "animal"}, '{"prompt": "Word: dog",'),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("domain_eval.jsonl", "data.domain_eval", "line 2: not valid JSON"),),
    ),
    "label outside the label set": Row(
        rows_of("data/domain_train.jsonl", {"prompt": "Word: quartz", "completion": "mineral"}),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("domain_train.jsonl", "data.domain_train", "label 'mineral' is not in the label set"),),
    ),
    "the multiple-choice file key of old": Row(
        sweep("data.mmlu_probe", "data/choice_probe.jsonl"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "data.mmlu_probe", "is replaced by general.benchmarks"),),
    ),
    "benchmark task missing from its YAML": Row(
        sweep("general.benchmarks", [{"task": "tiny_choise", "include": "lm_eval_tasks/tiny_choice.yaml"}]),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "general.benchmarks[0]", "defines no task 'tiny_choise' (it defines: tiny_choice)"),),
    ),
    "benchmark data file missing": Row(
        together(
            edit_yaml(
                "lm_eval_tasks/tiny_choice.yaml",
                lambda t: {**t, "dataset_kwargs": {"data_files": {"test": "../data/gone.jsonl"}}},
            ),
        ),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "general.benchmarks[0]", "the task's data file is missing"),),
    ),
    "unknown scorer": Row(
        sweep("task.metric", "token_f2"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "task.metric", "unknown scorer 'token_f2' (did you mean 'token_f1'?"),),
    ),
    "a user's scorer named after a metric the probe reports": Row(
        together(
            write_text("my_scores.py", "def parse_rate(prompt, completion, reference, **row):\n    return 1.0\n"),
            sweep("task.metric", "my_scores:parse_rate"),
        ),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "task.metric", "would report domain_parse_rate, which the probe reports already"),),
    ),
    "json scorer on references that are not JSON": Row(
        sweep("task.metric", "json_match"),
        ("hpo", "validate", "sweep.yaml"),
        tuple(
            Problem(
                f"domain_{split}.jsonl", f"data.domain_{split}", "every row: the reference completion is not a JSON"
            )
            for split in ("train", "eval", "test")
        ),
    ),
    "regex scorer without a pattern": Row(
        sweep("task.metric", "regex"),
        ("hpo", "validate", "sweep.yaml"),
        tuple(
            Problem(f"domain_{split}.jsonl", f"data.domain_{split}", "every row: has no pattern: give task.pattern")
            for split in ("train", "eval", "test")
        ),
    ),
    "an HTTP scorer without its url": Row(
        sweep("task.metric", {"concurrency": 4}),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "task.metric.url", "is required"),),
    ),
    "an HTTP scorer with a key it does not know": Row(
        sweep("task.metric", {"url": "http://127.0.0.1:9/score", "retry": 3}),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "task.metric.retry", "did you mean 'retries'?"),),
    ),
    "negative min_lift": Row(
        sweep("task.min_lift", -0.1),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "task.min_lift", "must be >= 0, got -0.1"),),
    ),
    "test split is the training file": Row(
        sweep("data.domain_test", "data/domain_train.jsonl"),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "data.domain_test", "is the same file as data.domain_train"),),
    ),
    "eval split holds training rows": Row(
        lambda folder: (folder / "data" / "domain_eval.jsonl").write_text(
            "".join((folder / "data" / "domain_train.jsonl").read_text().splitlines(keepends=True)[:20])
        ),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "data.domain_eval", "20 of 20 rows (100%) are also in data.domain_train"),),
    ),
    "empty label list": Row(
        sweep("task.labels", []),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "task.labels", "must list at least one label"),),
    ),
    "empty data file": Row(
        write_text("data/general_probe.jsonl", ""),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("general_probe.jsonl", "data.general_probe", "the dataset is empty"),),
    ),
    # the model
    "model path missing": Row(
        sweep("model", "./no_such_model"),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "model", "path not found: ./no_such_model"),),
    ),
    "empty model folder": Row(
        model_folder({}),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "model", "has no config.json"),),
    ),
    "garbage config.json": Row(
        model_folder({"config.json": "{not json"}),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "model", "config.json is not valid JSON"),),
    ),
    "model folder without weights": Row(
        model_folder({"config.json": '{"model_type": "llama"}'}),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "model", "no weights"),),
    ),
    "hub id that cannot load offline": Row(
        sweep("model", "nobody-here/no-such-model"),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "model", "could not be loaded"),),
    ),
    # RFT rewards
    "reward callable not importable": Row(
        rft_reward({"callable": "no_such_rewards:score"}),
        ("hpo", "sweep", "sweep_rft.yaml"),
        (Problem("sweep_rft.yaml", "task.reward.callable", "cannot import module 'no_such_rewards'"),),
    ),
    "reward callable without a colon": Row(
        rft_reward({"callable": "trainers.rewards.exact_match"}),
        ("hpo", "validate", "sweep_rft.yaml"),
        (Problem("sweep_rft.yaml", "task.reward.callable", "must look like 'package.module:function'"),),
    ),
    "reward URL without a scheme": Row(
        rft_reward({"url": "localhost:8080/reward"}),
        ("hpo", "sweep", "sweep_rft.yaml"),
        (Problem("sweep_rft.yaml", "task.reward.url", "must start with http:// or https://"),),
    ),
    "reward URL without a host": Row(
        rft_reward({"url": "https:///reward"}),
        ("hpo", "validate", "sweep_rft.yaml"),
        (Problem("sweep_rft.yaml", "task.reward.url", "has no host"),),
    ),
    "reward timeout 0": Row(
        rft_reward({"url": "http://localhost:8080/reward", "timeout_s": 0}),
        ("hpo", "validate", "sweep_rft.yaml"),
        (Problem("sweep_rft.yaml", "task.reward.timeout_s", "must be > 0, got 0"),),
    ),
    # the command line
    "unknown flag": Row(
        nothing, ("hpo", "sweep", "sweep.yaml", "--fast"), (Problem("hpo", "--fast", "unrecognized arguments"),)
    ),
    "unknown command": Row(nothing, ("hpo", "tune", "sweep.yaml"), (Problem("hpo", "tune", "invalid choice"),)),
    "export of a folder that is not a run": Row(
        nothing, ("hpo", "export", "data"), (Problem("data", "spec.yaml", "give a run directory written by"),)
    ),
    "export of a run without trials": Row(
        fake_run_dir, ("hpo", "export", "half_run"), (Problem("half_run", "trials.parquet", "not found"),)
    ),
    "report on a missing folder": Row(
        nothing, ("hpo", "report", "runs/nope"), (Problem("runs/nope", "", "folder not found"),)
    ),
    # rerunning an exported recipe
    "recipe file missing": Row(
        nothing, ("trainers", "no_such_recipe.yaml"), (Problem("no_such_recipe.yaml", "", "file not found"),)
    ),
    "recipe broken YAML": Row(
        write_text("recipe.yaml", "recipe: {stage: sft\n"),
        ("trainers", "recipe.yaml"),
        (Problem("recipe.yaml", "line 2", "broken YAML at line 2"),),
    ),
    "recipe stage unknown": Row(
        recipe(lambda document: document["recipe"].update(stage="ppo")),
        ("trainers", "recipe.yaml"),
        (Problem("recipe.yaml", "recipe.stage", "must be one of sft, cpt, rft, dpo, got 'ppo'"),),
    ),
    "recipe unknown hyperparameter": Row(
        recipe(lambda document: document["recipe"]["hyperparameters"].update(learning_rat=0.1)),
        ("trainers", "recipe.yaml"),
        (Problem("recipe.yaml", "recipe.hyperparameters.learning_rat", "did you mean 'learning_rate'?"),),
    ),
    "stage trainer on a broken recipe": Row(
        write_text("recipe.yaml", "recipe: {stage: sft\n"),
        ("trainers.sft", "recipe.yaml"),
        (Problem("recipe.yaml", "line 2", "broken YAML at line 2"),),
    ),
    "stage trainer on a missing recipe": Row(
        nothing, ("trainers.cpt", "no_such_recipe.yaml"), (Problem("no_such_recipe.yaml", "", "file not found"),)
    ),
    # input that passed validation and then failed with a traceback, or was taken silently
    "empty label list, sweep": Row(
        sweep("task.labels", []),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "task.labels", "must list at least one label"),),
    ),
    "repeated label": Row(
        sweep("task.labels", ["animal", "plant", "tool", "plant"]),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "task.labels", "must not repeat a label"),),
    ),
    "data file that is a folder": Row(
        sweep("data.domain_train", "data"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "data.domain_train", "is a folder, not a file: data (give the file inside it)"),),
    ),
    "probe file that is a folder, sweep": Row(
        sweep("data.general_probe", "model"),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "data.general_probe", "is a folder, not a file: model"),),
    ),
    "output_dir that is a file": Row(
        sweep("output_dir", "space.yaml"),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "output_dir", "space.yaml is a file, not a folder"),),
    ),
    "output_dir that cannot be created": Row(
        sweep("output_dir", "space.yaml/runs"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "output_dir", "cannot be created: "),),
    ),
    "sweep file that is a folder": Row(
        nothing, ("hpo", "validate", "data"), (Problem("data", "", "is a folder, not a file"),)
    ),
    "duplicate top-level key": Row(
        append_bytes("sweep.yaml", b"seed: 3\nseed: 4\n"),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "seed", "given twice (again at line"),),
    ),
    "duplicate key in a section": Row(
        write_text("sweep.yaml", "name: x\nbudget:\n  trials: 2\n  trials: 3\n"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "trials", "given twice (again at line 4)"),),
    ),
    "duplicate key in the search space": Row(
        append_bytes("space.yaml", b"stage: sft\n"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", "stage", "given twice"),),
    ),
    "sweep file that is not UTF-8": Row(
        append_bytes("sweep.yaml", b"# caf\xe9\n"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "line", "byte 0xe9 is not UTF-8 text"),),
    ),
    "data line that is not UTF-8": Row(
        append_bytes("data/domain_eval.jsonl", b'{"prompt": "caf\xe9", "completion": "animal"}\n'),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("domain_eval.jsonl", "line 21", "byte 0xe9 at column 16 is not UTF-8 text"),),
    ),
    "NaN bound, one line": Row(
        space("learning_rate.low", float("nan")),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", f"{LR}.low", "must be finite, got nan"),),
    ),
    "string bound, one line": Row(
        space("warmup_ratio.high", "lots"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", "parameters.warmup_ratio.high", "must be a number, got 'lots'"),),
    ),
    "string default, one line": Row(
        space("learning_rate.default", "small"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", f"{LR}.default", "must be a number, got 'small'"),),
    ),
    "typo in a required key, one line": Row(
        drop_key("sweep.yaml", "budget.trials", "trails"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "budget.trails", "did you mean 'trials'?"),),
    ),
    "typo in a required section, one line": Row(
        drop_key("sweep.yaml", "scheduler", "schedular"),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "schedular", "did you mean 'scheduler'?"),),
    ),
    "typo in a parameter's type, one line": Row(
        drop_key("space.yaml", "parameters.learning_rate.type", "typ"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("space.yaml", f"{LR}.typ", "did you mean 'type'?"),),
    ),
    "missing required section": Row(
        edit_yaml("sweep.yaml", lambda document: document.pop("budget") and None),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "budget", "is required (add it)"),),
    ),
    "bad max_steps, no knock-on line": Row(
        sweep("scheduler.max_steps", "long"),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "scheduler.max_steps", "must be an integer, got 'long'"),),
    ),
    "time budget 0": Row(
        sweep("budget.time_budget_s", 0),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "budget.time_budget_s", "must be > 0, got 0"),),
    ),
    # resources the machine can never give
    "a GPU on a machine without one": Row(
        sweep("resources", {"cpu": 1, "gpu": 1}),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "resources.gpu", "each trial asks for 1 GPU but this machine has none"),),
    ),
    "more CPUs than the machine has, sweep": Row(
        sweep("resources", {"cpu": 4096}),
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("sweep.yaml", "resources.cpu", "each trial asks for 4096 CPUs but this machine has"),),
    ),
    "negative resource wait": Row(
        sweep("resources", {"cpu": 1, "wait_s": -1}),
        ("hpo", "validate", "sweep.yaml"),
        (Problem("sweep.yaml", "resources.wait_s", "must be >= 0, got -1"),),
    ),
    # resuming
    # judging
    "judge of a folder that is not a run": Row(
        nothing, ("hpo", "judge", "data", "--adapter", "data"), (Problem("data", "spec.yaml", "give a run directory"),)
    ),
    "judge of a run whose spec is not a sweep's": Row(
        fake_run_dir, ("hpo", "judge", "half_run"), (Problem("spec.yaml", "config", "not a sweep's spec"),)
    ),
    "judge of a run and answers at once": Row(
        nothing,
        ("hpo", "judge", "runs", "--test", "data/domain_test.jsonl"),
        (Problem("hpo judge", "", "not both"),),
    ),
    "judge of answers without the base's": Row(
        write_text("answers.txt", "animal\n" * 20),
        ("hpo", "judge", "--test", "data/domain_test.jsonl", "--candidate", "answers.txt"),
        (Problem("hpo judge --test", "", "give --base ANSWERS and --candidate ANSWERS"),),
    ),
    "judge of too few answers": Row(
        together(write_text("base.txt", "animal\n" * 20), write_text("answers.txt", "animal\n" * 19)),
        JUDGE_ANSWERS,
        (Problem("answers.txt", "--candidate", "19 answers for 20 test rows"),),
    ),
    "judge of answers in broken JSON lines": Row(
        together(write_text("base.txt", "animal\n" * 20), write_text("answers.jsonl", '"animal"\n{"completion": 3}\n')),
        ("hpo", "judge", "--test", "data/domain_test.jsonl", "--base", "base.txt", "--candidate", "answers.jsonl"),
        (Problem("answers.jsonl", "--candidate", 'line 2: must be a JSON string or {"completion": "..."}'),),
    ),
    "judge of answers with an unknown scorer": Row(
        TWO_ANSWER_FILES,
        (*JUDGE_ANSWERS, "--metric", "exact_matsh"),
        (Problem("--metric", "", "unknown scorer 'exact_matsh' (did you mean 'exact_match'?"),),
    ),
    "judge of answers to references outside the labels": Row(
        TWO_ANSWER_FILES,
        (*JUDGE_ANSWERS, "--labels", "animal", "plant"),
        (  # the first rows outside the set, then a count of the rest
            *(Problem("domain_test.jsonl", "--test", f"row {n}: label 'tool' is not in the label set (animal, plant)") for n in (5, 6, 7)),
            Problem("domain_test.jsonl", "--test", "4 more rows with labels outside the set"),
        ),
    ),
    "sweep --require-learned of a pipeline": Row(
        nothing,
        ("hpo", "sweep", "pipeline.yaml", "--require-learned"),
        (Problem("pipeline.yaml", "--require-learned", "a pipeline's stages end without a held-out verdict"),),
    ),
    "resume of a folder that is not a run": Row(
        nothing, ("hpo", "resume", "data"), (Problem("data", "spec.yaml", "give a run directory written by"),)
    ),
    "resume of a run that never started": Row(
        run_dir_without_baseline,
        ("hpo", "resume", "early_run"),
        (Problem("early_run", "", "no trials were started here"),),
    ),
    "resume under a Ray Client address": Row(
        fake_run_dir,
        ("hpo", "resume", "half_run"),
        (Problem("RAY_ADDRESS=ray://", "", "run hpo on the cluster instead"),),
        env=(("RAY_ADDRESS", "ray://127.0.0.1:10001"),),
    ),
    "sweep under a Ray Client address": Row(
        nothing,
        ("hpo", "sweep", "sweep.yaml"),
        (Problem("RAY_ADDRESS=ray://", "", "a Ray Client address"),),
        env=(("RAY_ADDRESS", "ray://127.0.0.1:10001"),),
    ),
}


# --- running the rows -----------------------------------------------------------------------

PARALLEL_ROWS = 4  # the rows are subprocesses that mostly import: run a few at once to keep the file fast


@dataclass(frozen=True)
class Outcome:
    done: subprocess.CompletedProcess
    folder: Path  # the row's copy of the tiny example
    written: set[str]  # files created, changed or removed under the copy by the command
    ray_started: bool  # whether the row's private Ray temp dir appeared


def files_of(folder: Path) -> dict[str, int]:
    """Every file and folder under `folder` with its modification time."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def run_row(row: Row, folder: Path) -> Outcome:
    row.make(folder)
    before = files_of(folder)
    ray_parent = Path(tempfile.mkdtemp(prefix="bad-input-"))  # short: Ray's socket paths live under it
    program, *args = row.command
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # never join a cluster
    env.update(RAY_TMPDIR=str(ray_parent), HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1", **dict(row.env))
    try:
        done = subprocess.run(
            [sys.executable, "-m", program, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300
        )
        ray_started = any(ray_parent.iterdir())
    finally:
        shutil.rmtree(ray_parent, ignore_errors=True)
    after = files_of(folder)
    written = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    return Outcome(done, folder, written, ray_started)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, tiny_source: Path, tmp_path_factory: pytest.TempPathFactory):
    """Every selected row, each on its own copy of the tiny example, run a few at a time."""
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_bad_input_is_refused_up_front"
    ]
    folders = {}
    for name in selected:
        folders[name] = tmp_path_factory.mktemp("bad-input") / "tiny"
        shutil.copytree(tiny_source, folders[name])
    with ThreadPoolExecutor(max_workers=PARALLEL_ROWS) as pool:
        futures = {name: pool.submit(run_row, ROWS[name], folders[name]) for name in selected}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_is_refused_up_front(name: str, outcomes: dict[str, Outcome]) -> None:
    row, outcome = ROWS[name], outcomes[name]
    done = outcome.done
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if ERROR_LINE.match(line)]
    assert len(errors) == len(row.problems), errors  # one line per problem, each problem once
    for problem in row.problems:
        assert any(problem.file in e and problem.key in e and problem.message in e for e in errors), (problem, errors)
    runs = outcome.folder / "runs"  # the sweeps' output_dir
    assert not runs.exists() or not any(runs.iterdir()), "a run directory was created"
    assert not outcome.written, f"the command wrote {sorted(outcome.written)}"
    assert not outcome.ray_started, "the command started Ray"


def test_the_table_covers_every_entry_point() -> None:
    commands = {row.command[:2] if row.command[0] == "hpo" else row.command[:1] for row in ROWS.values()}
    assert {
        ("hpo", "validate"),
        ("hpo", "sweep"),
        ("hpo", "export"),
        ("hpo", "report"),
        ("hpo", "judge"),
        ("trainers",),
    } <= commands
    assert len(ROWS) >= 60


def test_a_probe_file_smaller_than_its_probe_is_a_warning(tiny):
    """An eval file of 1 row when the probe asks for 12 gave an objective from one example, silently."""
    rows_of("data/domain_eval.jsonl", {"prompt": "Classify the word.\nWord: cat", "completion": "animal"})(tiny)
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "validate", "sweep.yaml"], cwd=tiny, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (warning,) = [line for line in done.stdout.splitlines() if line.startswith("warning:") and "data.domain_eval" in line]
    assert warning == (
        f"warning: {tiny / 'sweep.yaml'}: data.domain_eval: 1 row, fewer than probes.domain_examples (12): "
        "every rung is scored on 1 (add rows, or set probes.domain_examples: 1 to say so)"
    )


def test_validate_warns_of_resources_this_machine_cannot_give(tiny):
    """`resources: {gpu: 1}` on a machine without one: `hpo validate` said ok and the sweep never started a trial.
    The file may be meant for a Ray cluster, so validate warns; `hpo sweep` here refuses (ROWS)."""
    sweep("resources", {"cpu": 1, "gpu": 1})(tiny)
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "validate", "sweep.yaml"], cwd=tiny, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (warning,) = [line for line in done.stdout.splitlines() if "resources.gpu" in line]
    assert warning.startswith(f"warning: {tiny / 'sweep.yaml'}: resources.gpu: each trial asks for 1 GPU")
    assert warning.endswith("; `hpo sweep` here refuses it")
