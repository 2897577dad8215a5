"""`hpo judge`: the sweep's own held-out check and verdict, for a model or answers made anywhere.

    hpo judge RUN --adapter DIR        a LoRA adapter on the run's base model
    hpo judge RUN --model PATH_OR_ID   a whole model (same tokenizer as the base)
    hpo judge RUN                      the run's own best recipe, judged again
    ... --answers-out DIR              also writes both models' answers (base.jsonl, candidate.jsonl)
    hpo judge --test FILE --base ANSWERS --candidate ANSWERS [--labels ...] [--metric NAME]

With a run, base and candidate are scored on the run's test split, general probes and
benchmarks with its scorer (hpo.judge.evaluate.held_out_check, the code a sweep ends with). With
answer files, the two sets of answers to the test rows are scored and compared the same way
(hpo.judge.evaluate.compare); nothing measures general ability then. An answer file holds one
answer per test row, in order: a `.jsonl` file of JSON strings or `{"completion": ...}`
objects, or any other file one answer per line.

Exit codes: 0 learned with general ability not regressed, 1 otherwise, 2 bad input (every
problem on its own line, before any model loads).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.config.errors import InputError, Problems
from hpo.config.task import check_scorer_name
from hpo.judge.verdict import Judging, judge, judging_of
from hpo.results.rundir import RunDir
from trainers.data import check_rows, read_jsonl
from trainers.recipe import Recipe, Scoring
from trainers.scorers import chance_scores, make_scorer, reference_problems
from trainers.stages import SFT, recipe_from_dict, stage_of

if TYPE_CHECKING:
    from trainers.probes import ProbeSet  # imports torch: answer files are read and checked without it

EXIT_PASSED, EXIT_NOT_PASSED = 0, 1
JSON_ANSWERS = (".jsonl", ".json")
JUDGED_FILES = ("domain_test", "general_probe", "instruction_probe")  # the run's data a held-out check reads


# --- a model against a run's base ------------------------------------------------------------------------


def judged_recipe(plain: dict[str, Any]) -> dict[str, Any]:
    """A run's recipe as judging reads it: the hyperparameters its stage knows (a run written when every
    stage shared one set holds the others' too; judging uses none of them, only data, model and scoring)."""
    known = {f.name for f in dataclasses.fields(stage_of(plain["stage"]).hyperparameters)}
    return {**plain, "hyperparameters": {k: v for k, v in plain.get("hyperparameters", {}).items() if k in known}}


def run_recipe(run_dir: Path) -> tuple[Recipe, Judging]:
    """The run's base recipe and judging settings, from its spec.yaml; InputError without a test split."""
    run = RunDir(run_dir)
    run.require(run.spec.name)
    spec = run.read_spec()
    try:
        config = spec["config"]
        recipe = recipe_from_dict(judged_recipe(config["recipe"]))
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise InputError(
            [
                f"{run.spec}: config: not a sweep's spec ({err!r} unreadable); give a run directory written by `hpo sweep`"
            ]
        ) from err
    if recipe.data.domain_test is None:
        raise InputError(
            [
                f"{run.spec}: config.recipe.data.domain_test: the run has no test split to judge on "
                "(sweep again with data.domain_test, or judge answers with --test FILE)"
            ]
        )
    used = {key: getattr(recipe.data, key) for key in JUDGED_FILES}
    missing = [(key, path) for key, path in used.items() if path is not None and not Path(path).is_file()]
    if missing:
        raise InputError(
            [
                f"{run.spec}: config.recipe.data.{key}: {path} not found (the run's data must be where it was)"
                for key, path in missing
            ]
        )
    return recipe, judging_of(config)


def candidate_of(run_dir: Path, adapter: Path | None, model: str | None) -> tuple[str, Path | str]:
    """(what the verdict calls it, where it loads from); InputError for an adapter folder that is not one."""
    if model is not None:
        return f"the model {model}", model
    folder = adapter if adapter is not None else RunDir(run_dir).adapter
    if not (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        flag = "--adapter" if adapter is not None else f"{run_dir}: best/adapter"
        raise InputError(
            [
                f"{flag}: {folder} holds no adapter (adapter_config.json) or model (config.json); give the folder a trainer wrote"
            ]
        )
    return (f"the adapter {folder}" if adapter is not None else "the best recipe"), folder


def judge_model(
    run_dir: Path, adapter: Path | None, model: str | None, min_lift: float | None, answers_out: Path | None = None
) -> dict[str, Any]:
    """Score the run's base and the candidate on the run's held-out check; the scores with their verdict
    (and, with `answers_out`, both models' answers to the test rows written there)."""
    recipe, judging = run_recipe(run_dir)
    if min_lift is not None:
        judging = dataclasses.replace(judging, min_lift=min_lift)
    name, source = candidate_of(run_dir, adapter, model)
    from hpo.judge.evaluate import held_out_check, tuned_model  # imports torch: once the input is known good

    def load_candidate(base_model):
        if model is not None:
            from trainers.models import load_base

            return load_base(model)[0]
        return tuned_model(Path(source), base_model)

    return held_out_check(recipe, name, load_candidate, judging, answers_out=answers_out)


# --- answers made elsewhere -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerTask:
    test: Path
    labels: tuple[str, ...]
    metric: Scoring


def read_answers(path: Path, flag: str) -> tuple[list[str], list[str]]:
    """(answers, problem lines): `.jsonl` rows as JSON strings or {"completion": ...}, else one answer per line."""
    if not path.is_file():
        return [], [f"{flag}: {path}: file not found (give one answer per test row, in order)"]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        return [], [f"{flag}: {path}: not UTF-8 text (save the file as UTF-8)"]
    if path.suffix not in JSON_ANSWERS:
        return lines, []
    answers = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            return [], [f"{flag}: {path}: line {number}: not valid JSON ({err.msg}); fix or remove the line"]
        if isinstance(value, dict):
            value = value.get("completion")
        if not isinstance(value, str):
            return [], [
                f'{flag}: {path}: line {number}: must be a JSON string or {{"completion": "..."}}, got {line[:40]}'
            ]
        answers.append(value)
    return answers, []


def check_answer_task(task: AnswerTask) -> list[str]:
    """Problem lines for the test file, the scorer and the labels."""
    lines = check_rows(task.test, "--test", ("prompt", "completion"), task.labels)
    problems = Problems("--metric")
    check_scorer_name(problems, "", task.metric)
    lines += problems.lines
    if not lines:
        lines += [
            f"--test: {task.test}: row {n}: {p}" for n, p in reference_problems(task.metric, read_jsonl(task.test))
        ]
    return lines


def judge_answers(task: AnswerTask, base_file: Path, candidate_file: Path, min_lift: float) -> dict[str, Any]:
    """The held-out figures and verdict of two sets of answers to the test rows; InputError on bad input."""
    problems = check_answer_task(task)
    base_answers, found = read_answers(base_file, "--base")
    candidate_answers, more = read_answers(candidate_file, "--candidate")
    problems += found + more
    rows = read_jsonl(task.test) if not problems else []
    for flag, path, answers in (
        ("--base", base_file, base_answers),
        ("--candidate", candidate_file, candidate_answers),
    ):
        if rows and len(answers) != len(rows):
            problems.append(
                f"{flag}: {path}: {len(answers)} answers for {len(rows)} test rows in {task.test} "
                "(give one answer per test row, in order)"
            )
    if problems:
        raise InputError(problems)
    from hpo.judge.evaluate import compare  # imports torch, as do the probes
    from trainers.probes import ProbeSet

    scorer = make_scorer(task.metric)
    probes = ProbeSet(
        domain=rows, corpora={}, instructions=[], labels=task.labels, max_new_tokens=0, max_seq_len=0, scorer=scorer
    )
    scored = [answers_scored(probes, answers) for answers in (base_answers, candidate_answers)]
    metric = SFT.domain_metric(task.metric)
    chance = chance_scores(scorer, rows, task.labels) if task.labels else None
    scores = compare(metric, f"the answers in {candidate_file}", scored[0], scored[1], rows, chance, task.labels)
    scores["verdict"] = judge(scores, metric, Judging(min_lift)).to_dict()
    return scores


def answers_scored(
    probes: ProbeSet, answers: list[str]
) -> tuple[dict[str, Any], dict[str, list[float]], dict[str, Any]]:
    from trainers.probes import scored_answers

    metrics, predictions = scored_answers(probes, answers)
    return metrics, {"domain": predictions["scores"]}, predictions


def exit_code(scores: dict[str, Any]) -> int:
    return EXIT_PASSED if scores["verdict"]["passed"] else EXIT_NOT_PASSED
