"""Benchmarks through lm-evaluation-harness (`lm-eval`): the field's own task definitions and scoring.

A benchmark (trainers.recipe.Benchmark) is one of lm-eval's tasks by name (its data comes
from the hub), or a task in a local task YAML (`include`: a file, or a folder of them),
typically `dataset_path: json` with `dataset_kwargs.data_files` pointing at a file; such
paths are read relative to the YAML, so a task folder travels with its data. The model is
the one in memory (lm-eval's HFLM wraps it), so a base model and an adapter on it are
scored without saving either. Each example's metric (for multiple choice: `acc`, whether
the likeliest choice is right) is kept, so base and best can be compared pairwise.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.util
import io
import logging
from pathlib import Path
from typing import Any

from trainers.recipe import Benchmark

METRIC_PREFERENCE = ("acc", "exact_match", "acc_norm")  # the per-example metric a task is summarized by
BATCH_SIZE = 16  # the fastest of 4, 8, 16 and 32 on 2 cores for MMLU (benchmarks/README.md)


@functools.cache
def lm_eval_yaml_loader() -> Any:
    """lm-eval's task YAML loader (`include:` and `!function` tags), loaded from its file alone: importing
    it as `lm_eval.tasks._yaml_loader` first runs `lm_eval.tasks`, which imports `datasets` and pandas
    (seconds that `hpo validate` would spend on every sweep file naming a local task)."""
    import lm_eval

    path = Path(lm_eval.__file__).parent / "tasks" / "_yaml_loader.py"
    spec = importlib.util.spec_from_file_location("forge_hpo_lm_eval_yaml_loader", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def local_tasks(include: Path) -> dict[str, tuple[dict[str, Any], Path]]:
    """Every task config in a YAML file (or the YAMLs of a folder), by name, with the file it came from."""
    load_yaml = lm_eval_yaml_loader().load_yaml

    files = sorted(include.glob("*.yaml")) if include.is_dir() else [include]
    found = {}
    for file in files:
        config = load_yaml(file)
        if isinstance(config.get("task"), str):
            found[config["task"]] = (config, file)
    return found


def data_files(config: dict[str, Any]) -> dict[str, str] | None:
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, str):
        return {"data": files}
    return files if isinstance(files, dict) else None


def task_config(benchmark: Benchmark) -> dict[str, Any] | str:
    """What lm-eval is given for the benchmark: a local task's config (data paths made absolute), or its name."""
    if benchmark.include is None:
        return benchmark.task
    config, file = local_tasks(Path(benchmark.include))[benchmark.task]
    config = dict(config)
    files = data_files(config)
    if files is not None:
        resolved = {split: str((file.parent / path).resolve()) for split, path in files.items()}
        config["dataset_kwargs"] = {**config["dataset_kwargs"], "data_files": resolved}
    return config


def benchmark_files(benchmark: Benchmark) -> list[Path]:
    """The files a benchmark's examples and scores come from besides lm-eval itself: a local task's
    YAML and Python files (its folder's, which `include:` and `!function` may name) and its data files.
    A task of lm-eval's own has none."""
    if benchmark.include is None:
        return []
    include = Path(benchmark.include)
    folder = include if include.is_dir() else include.parent
    code = sorted(path for path in folder.iterdir() if path.suffix in (".yaml", ".yml", ".py"))
    return [*code, *sorted(Path(path) for path in (data_files(task_config(benchmark)) or {}).values())]


def benchmark_problem(benchmark: Benchmark) -> str:
    """Why the benchmark cannot run (unknown task, missing data file, broken YAML), or empty."""
    if benchmark.include is None:
        from lm_eval.tasks import TaskManager

        known = TaskManager().all_tasks
        if benchmark.task in known:
            return ""
        close = difflib.get_close_matches(benchmark.task, known, n=1, cutoff=0.8)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"lm-eval knows no task '{benchmark.task}' ({hint}or give `include:` a local task YAML)"
    try:
        tasks = local_tasks(Path(benchmark.include))
    except Exception as err:  # lm-eval's loader raises what YAML and its tags raise
        return f"{benchmark.include}: not a readable lm-eval task YAML ({type(err).__name__}: {err})"
    if benchmark.task not in tasks:
        listed = ", ".join(sorted(tasks)) or "none"
        return f"{benchmark.include} defines no task '{benchmark.task}' (it defines: {listed})"
    config = task_config(benchmark)
    missing = [path for path in (data_files(config) or {}).values() if not Path(path).is_file()]
    if missing:
        return f"the task's data file is missing: {missing[0]} (data_files are relative to the task YAML)"
    return ""


def sample_metric(sample: dict[str, Any]) -> float:
    """The example's score under the task's main metric."""
    for name in METRIC_PREFERENCE:
        if name in sample:
            return float(sample[name])
    raise ValueError(f"no per-example metric among {METRIC_PREFERENCE} in lm-eval's samples ({sorted(sample)})")


def load_task(benchmark: Benchmark) -> dict[str, Any]:
    """lm-eval's task dict for the benchmark: a local task needs no index of lm-eval's own tasks."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_defaults=benchmark.include is None)
    return manager.load([task_config(benchmark)])


def run_benchmark(
    model: Any, tokenizer: Any, benchmark: Benchmark, system_prompt: str | None, batch_size: int = BATCH_SIZE
) -> dict[str, Any]:
    """The benchmark's score on the model in memory: {"estimate": stats.Estimate, "scores": per example}.

    lm-eval's evaluation loop is called directly, with its progress bars sent nowhere: the
    sweep prints its own lines.
    """
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM

    from trainers import stats

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    with contextlib.redirect_stderr(io.StringIO()):
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        output = evaluator.evaluate(
            lm=lm,
            task_dict=load_task(benchmark),
            limit=benchmark.limit,
            bootstrap_iters=0,
            log_samples=True,
            apply_chat_template=benchmark.chat_template,
            system_instruction=system_prompt if benchmark.chat_template else None,
            verbosity="ERROR",
        )
    samples = [s for task_samples in output["samples"].values() for s in sorted(task_samples, key=lambda s: s["doc_id"])]
    scores = [sample_metric(sample) for sample in samples]
    return {"estimate": stats.score_estimate(scores), "scores": scores}


def run_benchmarks(
    model: Any, tokenizer: Any, benchmarks: tuple[Benchmark, ...], system_prompt: str | None = None
) -> dict[str, dict[str, Any]]:
    """Every benchmark's score, by task name."""
    was_training = model.training
    model.eval()
    try:
        return {b.task: run_benchmark(model, tokenizer, b, system_prompt) for b in benchmarks}
    finally:
        model.train(was_training)
