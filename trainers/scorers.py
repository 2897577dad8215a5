"""How a generated answer is scored against its reference: one interface for SFT probes and RFT rewards.

Every scorer is an object that scores a batch of answers, one float each:

    score_batch(prompts, completions, references, rows) -> list[float]

`prompts` and `completions` are plain text, `references` the rows' `completion`, and `rows`
the data rows' other fields (a regex scorer reads `pattern` there). A built-in scorer is one
`Builtin` in BUILTIN_SCORERS: its name (the rung metric is `domain_<name>`), its one-line
definition (docs/judging.md lists them), its function of one answer,
`score(prompt, completion, reference, **row) -> float`, and what it needs of a reference.

A user's scorer is "package.module:name", treated as a built-in: its rung metric is
`domain_<name>`, and it names either a function of one answer with the signature above or an
object with `score_batch` (a model-based scorer, e.g. a judge model, scoring many answers in
one call). Setting `deterministic = True` on it says its scores depend on the answers alone,
which lets the base model's figures be cached as a built-in's are. An HTTP endpoint
(`{url: ...}`, trainers.endpoint) is a scorer too. `make_scorer(Scoring)` gives a `Scorer`
whose `score_all` checks every value; `reference_problems` finds the rows a scorer cannot
score before anything runs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
import string
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from trainers.imports import import_named
from trainers.shared import Scoring, ScoringError

ScoreFunction = Callable[..., float]  # score(prompt, completion, reference, **row) -> float
# problem(reference, row, options) -> why the scorer cannot score that reference, or ""
ReferenceCheck = Callable[[str, Mapping[str, Any], Mapping[str, Any]], str]
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


class BatchScorer(Protocol):
    """What every scorer is: a batch of answers in, one score each out."""

    def score_batch(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
    ) -> list[float]: ...


def score_each(
    function: ScoreFunction,
    prompts: Sequence[str],
    completions: Sequence[str],
    references: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> list[float]:
    """A function of one answer over a batch."""
    return [function(p, c, r, **row) for p, c, r, row in zip(prompts, completions, references, rows)]


@dataclass(frozen=True)
class Builtin:
    """A built-in scorer: its name, its definition, its function of one answer, what it needs of a reference.

    `deterministic`: its scores depend on the answers alone (the base model's figures may be cached).
    """

    name: str
    definition: str
    function: ScoreFunction
    problem: ReferenceCheck = no_problem
    deterministic: bool = True

    def score_batch(self, prompts, completions, references, rows) -> list[float]:
        return score_each(self.function, prompts, completions, references, rows)


@dataclass(frozen=True)
class PerAnswer:
    """A user's function of one answer, `score(prompt, completion, reference, **row) -> float`, as a scorer."""

    function: ScoreFunction

    @property
    def deterministic(self) -> bool:
        return getattr(self.function, "deterministic", False) is True

    def score_batch(self, prompts, completions, references, rows) -> list[float]:
        return score_each(self.function, prompts, completions, references, rows)


BUILTIN_SCORERS: dict[str, Builtin] = {
    scorer.name: scorer
    for scorer in (
        Builtin(
            "exact_match", "1 when the answer equals the reference, both stripped of surrounding whitespace", exact_match
        ),
        Builtin(
            "normalized_match",
            "1 when both are equal after folding case, collapsing whitespace and dropping enclosing quotes "
            "or brackets and trailing sentence punctuation",
            normalized_match,
        ),
        Builtin("token_f1", "bag-of-tokens F1 as in SQuAD (lower case, punctuation and articles removed)", token_f1),
        Builtin("rouge_l", "ROUGE-L F-measure (Google's rouge-score, with stemming)", rouge_l),
        Builtin("chrf", "sentence chrF (sacrebleu), scaled to 0..1", chrf),
        Builtin("bleu", "sentence BLEU (sacrebleu, exponential smoothing), scaled to 0..1", bleu),
        Builtin(
            "json_match",
            "the share of the reference object's fields the answer's JSON object has with equal values "
            "(JSON's equality: true is not 1); 0 when the answer is not a JSON object",
            json_match,
            json_reference_problem,
        ),
        Builtin(
            "regex",
            "1 when the stripped answer fully matches the pattern (the task's, or the row's)",
            regex_match,
            pattern_problem,
        ),
    )
}
# Metric names the domain probe reports besides the scorer's own: no scorer may take them.
RESERVED_KEYS = frozenset({"parse_rate", "majority", "uniform"})


# --- a scorer bound to its settings ---------------------------------------------------------


@dataclass(frozen=True)
class Scorer:
    """A scorer ready to use: `score_all` scores a batch of answers, one finite float each."""

    key: str  # the rung metric is domain_<key>
    kind: BatchScorer  # a Builtin, a user's scorer, or an HTTP endpoint (trainers.endpoint.Endpoint)
    options: Mapping[str, Any] = field(default_factory=dict)  # defaults for every row (e.g. the task's pattern)

    def score_all(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
    ) -> list[float]:
        fields = [{**self.options, **row_fields(row)} for row in rows]
        try:
            values = list(self.kind.score_batch(list(prompts), list(completions), list(references), fields))
        except ScoringError:
            raise
        except Exception as err:  # user code: whatever it raises stops the trial with its reason
            raise ScoringError(f"the scorer raised {type(err).__name__}: {err}") from err
        if len(values) != len(completions):
            raise ScoringError(f"the scorer returned {len(values)} scores for {len(completions)} answers")
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ScoringError(f"the scorer returned {value!r}; every score must be a finite number")
        return [float(v) for v in values]


def row_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A data row's fields other than the prompt and the reference completion."""
    return {k: v for k, v in row.items() if k not in ("prompt", "completion")}


def import_scorer(spec: str, import_root: str | None) -> BatchScorer:
    """The scorer "package.module:name" names (an object with `score_batch`, or a function of one answer);
    ValueError says what is wrong."""
    module_name, name, found = import_named(spec, import_root, "function")
    if callable(getattr(found, "score_batch", None)):
        return found
    if not callable(found):
        raise ValueError(f"module '{module_name}' has no callable '{name}' (nor an object with score_batch)")
    return PerAnswer(found)


def scorer_kind(scoring: Scoring) -> BatchScorer:
    """The scorer a task's `metric` (or an RFT reward's `scorer`/`url`) names, unbound to its options."""
    if scoring.url is not None:
        from trainers.endpoint import Endpoint  # httpx: only for HTTP scorers

        return Endpoint(scoring.url, scoring.concurrency, scoring.timeout_s, scoring.retries)
    if scoring.scorer in BUILTIN_SCORERS:
        return BUILTIN_SCORERS[scoring.scorer]
    if scoring.scorer is None:
        raise ValueError("a scoring names no scorer and no url")
    return import_scorer(scoring.scorer, scoring.import_root)


def make_scorer(scoring: Scoring) -> Scorer:
    """The scorer a task's `metric` (or an RFT reward's `scorer`/`url`) describes, with its options."""
    options = {"pattern": scoring.pattern} if scoring.pattern is not None else {}
    return Scorer(scoring.metric_key, scorer_kind(scoring), options)


def deterministic(scoring: Scoring) -> bool:
    """Whether the scores depend on the answers alone: a built-in's do, a user's when it says so
    (`deterministic = True`); an endpoint's never (a service may change behind its URL)."""
    return getattr(scorer_kind(scoring), "deterministic", False) is True


def source_digest(scoring: Scoring) -> str:
    """The sha256 of the module file of a user's scorer; "" for a built-in or an endpoint."""
    if scoring.url is not None or scoring.scorer is None or ":" not in scoring.scorer:
        return ""
    import_scorer(scoring.scorer, scoring.import_root)
    source = inspect.getsourcefile(sys.modules[scoring.scorer.partition(":")[0]])
    return hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else ""


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
