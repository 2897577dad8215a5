"""How a generated answer is scored against its reference: one interface for SFT probes and RFT rewards.

    score(prompt, completion, reference, **row) -> float

`prompt` and `completion` are plain text, `reference` the row's `completion`, and `row`
the data row's other fields (a regex scorer reads `pattern` there). Built-in scorers, each
defined in docs/scorers.md:

    exact_match       1 when the answer equals the reference, both stripped of surrounding whitespace
    normalized_match  1 when both are equal after folding case, collapsing whitespace and dropping
                      enclosing quotes or brackets and trailing sentence punctuation
    token_f1          bag-of-tokens F1 as in SQuAD (lower case, punctuation and articles removed)
    rouge_l           ROUGE-L F-measure (Google's rouge-score, with stemming)
    chrf              sentence chrF (sacrebleu), scaled to 0..1
    bleu              sentence BLEU (sacrebleu, exponential smoothing), scaled to 0..1
    json_match        the share of the reference object's fields the answer's JSON object has with
                      equal values (JSON's equality: true is not 1); 0 when the answer is not a JSON object
    regex             1 when the stripped answer fully matches the pattern (the task's, or the row's)

A user's own scorer is "package.module:function" with the same signature, or an HTTP
endpoint (`{url: ...}`, trainers.endpoint). `make_scorer(ScorerSpec)` gives a `Scorer`
whose `score_all` scores a batch; `check_references` finds the rows a scorer cannot score
before anything runs.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from trainers.imports import import_named

if TYPE_CHECKING:
    from trainers.recipe import Scoring

ScoreFunction = Callable[..., float]  # score(prompt, completion, reference, **row) -> float
ARTICLES = re.compile(r"\b(a|an|the)\b")
TRAILING = ".,;:!?" + string.whitespace  # sentence punctuation after an answer
ENCLOSING = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb", "(": ")", "[": "]", "{": "}"}


def parse_answer(generated: str) -> str:
    """The parse rule of label answers: surrounding whitespace stripped, nothing else."""
    return generated.strip()


# --- the built-in scorers -------------------------------------------------------------------


def exact_match(prompt: str, completion: str, reference: str, **row: Any) -> float:
    return float(parse_answer(completion) == parse_answer(reference))


def normalize(text: str) -> str:
    """Case folded, inner whitespace collapsed, and what only wraps an answer dropped: enclosing
    quotes or brackets and trailing sentence punctuation. A sign, a unit or a percent stays:
    "-5" is not "5" and "50%" is not "50"."""
    text = " ".join(text.casefold().split())
    while True:
        unwrapped = text.rstrip(TRAILING).strip()
        if len(unwrapped) >= 2 and unwrapped[0] in ENCLOSING and ENCLOSING[unwrapped[0]] == unwrapped[-1]:
            unwrapped = unwrapped[1:-1].strip()
        if unwrapped == text:
            return text
        text = unwrapped


def normalized_match(prompt: str, completion: str, reference: str, **row: Any) -> float:
    return float(normalize(completion) == normalize(reference))


def squad_tokens(text: str) -> list[str]:
    """SQuAD's answer normalization: lower case, punctuation and articles removed, split on whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return ARTICLES.sub(" ", text).split()


def token_f1(prompt: str, completion: str, reference: str, **row: Any) -> float:
    """SQuAD's F1 over bags of tokens (written out here: the SQuAD script is a few lines, and the
    packaged versions fetch it from a hub at run time). Two empty answers agree: 1."""
    predicted, expected = squad_tokens(completion), squad_tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def rouge_scorer():
    from rouge_score import rouge_scorer as rouge  # rouge-score: Google's reference implementation
    from rouge_score.tokenizers import DefaultTokenizer

    # its default tokenizer, named: left to itself, RougeScorer logs "Using default tokenizer." to the terminal
    return rouge.RougeScorer(["rougeL"], tokenizer=DefaultTokenizer(use_stemmer=True))


def rouge_l(prompt: str, completion: str, reference: str, **row: Any) -> float:
    return float(rouge_scorer().score(reference, completion)["rougeL"].fmeasure)


def chrf(prompt: str, completion: str, reference: str, **row: Any) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(completion, [reference]).score / 100.0


def bleu(prompt: str, completion: str, reference: str, **row: Any) -> float:
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True).sentence_score(completion, [reference]).score / 100.0


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object `text` holds (surrounding whitespace allowed), or None."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 and [1, 0] is not [true, false] (Python's == says they are);
    1 and 1.0 are one JSON number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def json_match(prompt: str, completion: str, reference: str, **row: Any) -> float:
    expected = json_object(reference) or {}
    answer = json_object(completion)
    if answer is None or not expected:
        return 0.0
    return sum(key in answer and same_json(answer[key], value) for key, value in expected.items()) / len(expected)


def regex_match(prompt: str, completion: str, reference: str, pattern: str | None = None, **row: Any) -> float:
    if pattern is None:
        raise ValueError("the regex scorer needs a pattern (task.pattern, or a `pattern` field in every row)")
    return float(re.fullmatch(pattern, parse_answer(completion)) is not None)


# --- what each scorer is, and what it needs ---------------------------------------------------


def no_problem(reference: str, row: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    return ""


def json_reference_problem(reference: str, row: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    if json_object(reference) is None:
        return "the reference completion is not a JSON object (json_match compares JSON fields)"
    if not json_object(reference):
        return "the reference completion is an empty JSON object (json_match needs at least one field)"
    return ""


def pattern_problem(reference: str, row: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    pattern = row.get("pattern", options.get("pattern"))
    if not isinstance(pattern, str):
        return "has no pattern: give task.pattern, or a string `pattern` field in every row"
    try:
        re.compile(pattern)
    except re.error as err:
        return f"pattern {pattern!r} is not a valid regular expression ({err})"
    return ""


@dataclass(frozen=True)
class Builtin:
    """A built-in scorer: its function, whether its scores are 0/1, and what it needs of a reference."""

    function: ScoreFunction
    binary: bool = False
    problem: Callable[[str, Mapping[str, Any], Mapping[str, Any]], str] = no_problem


BUILTIN_SCORERS: dict[str, Builtin] = {
    "exact_match": Builtin(exact_match, binary=True),
    "normalized_match": Builtin(normalized_match, binary=True),
    "token_f1": Builtin(token_f1),
    "rouge_l": Builtin(rouge_l),
    "chrf": Builtin(chrf),
    "bleu": Builtin(bleu),
    "json_match": Builtin(json_match, problem=json_reference_problem),
    "regex": Builtin(regex_match, binary=True, problem=pattern_problem),
}


# --- a scorer bound to its settings ---------------------------------------------------------


class ScoringError(RuntimeError):
    """An answer could not be scored (an endpoint down or refusing, user code raising, a bad value).

    `step` is the training step whose scores failed (0 outside training). A trial never goes on
    with a made-up score.
    """

    def __init__(self, message: str, step: int = 0) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class Scorer:
    """A scorer ready to use: `score_all` scores a batch of answers, one float each."""

    key: str  # the rung metric is domain_<key>
    binary: bool  # every score is 0 or 1 (a rate)
    function: ScoreFunction | None = None  # per answer; None for an endpoint
    options: Mapping[str, Any] = field(default_factory=dict)  # defaults for every row (e.g. the task's pattern)
    endpoint: Any = None  # trainers.endpoint.Endpoint for an HTTP scorer

    def score_all(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
    ) -> list[float]:
        if self.endpoint is not None:
            payloads = [
                {"prompt": p, "completion": c, "reference": r, **row_fields(row)}
                for p, c, r, row in zip(prompts, completions, references, rows)
            ]
            return self.endpoint.score_all(payloads)
        return [self.score_one(p, c, r, row) for p, c, r, row in zip(prompts, completions, references, rows)]

    def score_one(self, prompt: str, completion: str, reference: str, row: Mapping[str, Any]) -> float:
        fields = {**self.options, **row_fields(row)}
        try:
            value = self.function(prompt, completion, reference, **fields)
        except Exception as err:  # user code: whatever it raises stops the trial with its reason
            raise ScoringError(f"the scorer raised {type(err).__name__}: {err}") from err
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ScoringError(f"the scorer returned {value!r}; every score must be a finite number")
        return float(value)


def row_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A data row's fields other than the prompt and the reference completion."""
    return {k: v for k, v in row.items() if k not in ("prompt", "completion")}


def import_scorer(spec: str, import_root: str | None) -> ScoreFunction:
    """The function "package.module:function" names; ValueError says what is wrong."""
    module_name, name, function = import_named(spec, import_root, "function")
    if not callable(function):
        raise ValueError(f"module '{module_name}' has no callable '{name}'")
    return function


def make_scorer(scoring: Scoring) -> Scorer:
    """The scorer a task's `metric` (or an RFT reward's `scorer`/`url`) describes."""
    options = {"pattern": scoring.pattern} if scoring.pattern is not None else {}
    if scoring.url is not None:
        from trainers.endpoint import Endpoint  # httpx: only for HTTP scorers

        endpoint = Endpoint(scoring.url, scoring.concurrency, scoring.timeout_s, scoring.retries)
        return Scorer(scoring.metric_key, binary=False, endpoint=endpoint)
    if scoring.scorer in BUILTIN_SCORERS:
        builtin = BUILTIN_SCORERS[scoring.scorer]
        return Scorer(scoring.metric_key, builtin.binary, builtin.function, options)
    if scoring.scorer is None:
        raise ValueError("a scoring names no scorer and no url")
    return Scorer(scoring.metric_key, False, import_scorer(scoring.scorer, scoring.import_root), options)


def reference_problems(scoring: Scoring, rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """(row number, problem) for every row a built-in scorer cannot score; user scorers are trusted."""
    builtin = BUILTIN_SCORERS.get(scoring.scorer or "")
    if builtin is None or scoring.url is not None:
        return []
    options = {"pattern": scoring.pattern} if scoring.pattern is not None else {}
    found = []
    for number, row in enumerate(rows, start=1):
        reference = row.get("completion")
        if isinstance(reference, str) and (problem := builtin.problem(reference, row, options)):
            found.append((number, problem))
    return found


def chance_scores(scorer: Scorer, rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """What guessing scores on `rows` of a label task: always answering the most frequent reference
    (`majority`, and its score on each row: `majority_scores`), and answering a label drawn
    uniformly at random (`uniform`, its expectation)."""
    references = [row["completion"] for row in rows]
    prompts = [row["prompt"] for row in rows]
    majority_label = Counter(references).most_common(1)[0][0]

    def row_scores(answer: str) -> list[float]:
        return scorer.score_all(prompts, [answer] * len(rows), references, rows)

    by_label = {label: row_scores(label) for label in labels}
    majority_scores = by_label[majority_label] if majority_label in by_label else row_scores(majority_label)
    return {
        "majority_label": majority_label,
        "majority": sum(majority_scores) / len(majority_scores),
        "majority_scores": majority_scores,
        "uniform": sum(sum(scores) / len(scores) for scores in by_label.values()) / len(by_label),
    }
