"""RFT rewards behind TRL's reward-function signature: a scorer, an HTTP endpoint, or a TRL reward function.

Every reward is called as `reward(prompts, completions, **columns) -> list[float]`, the
way TRL's GRPOTrainer calls it: prompts and completions in chat form (lists of
{"role", "content"} messages), and the dataset's other columns as keyword lists. The
row's `completion` (the reference answer) arrives as `reference`, because GRPO keeps
the name `completion` for itself.

A reward is one of (trainers.recipe.Scoring):
- a scorer (trainers.scorers: a built-in such as token_f1, or "package.module:function"
  scoring one answer), each answer's score its reward;
- an HTTP endpoint (trainers.endpoint), one JSON POST per answer;
- a TRL reward function "package.module:function", called as TRL calls it.

`RecordedReward` checks every value and keeps them for the rung's statistics; whatever
fails raises ScoringError: a trial never trains on a made-up reward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from trainers.imports import import_named
from trainers.recipe import Scoring
from trainers.scorers import Scorer, ScoringError, make_scorer, parse_answer

RewardFunction = Callable[..., list[float]]
# Keyword arguments TRL adds for its own reward helpers; they are not data and never scored.
TRAINER_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "completion_ids", "environments"})


def text_of(message: Any) -> str:
    """The text of a completion or prompt, whether plain text or a list of chat messages."""
    if isinstance(message, str):
        return message
    return str(message[-1]["content"]) if message else ""


def exact_match(prompts: Sequence[Any], completions: Sequence[Any], reference: Sequence[str], **_: Any) -> list[float]:
    """+1 when the parsed completion equals the row's reference answer exactly, else -1.

    The parse rule is the label probes' (surrounding whitespace stripped, nothing else),
    so a reward rate and an exact-match rate on the same answers are the same number.
    """
    return [1.0 if parse_answer(text_of(c)) == r else -1.0 for c, r in zip(completions, reference)]


def import_callable(spec: str, import_root: str | None = None) -> RewardFunction:
    """The function named "package.module:function"; ValueError says what is wrong with the name."""
    module_name, name, function = import_named(spec, import_root, "function")
    if not callable(function):
        raise ValueError(f"module '{module_name}' has no callable '{name}'")
    return function


class ScorerReward:
    """A scorer as a TRL reward function: each answer's score against the row's reference is its reward."""

    __name__ = "scorer_reward"

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        fields = {k: v for k, v in columns.items() if k not in TRAINER_KWARGS and k != "reference"}
        rows = [{k: v[i] for k, v in fields.items()} for i in range(len(completions))]
        return self.scorer.score_all(
            [text_of(p) for p in prompts], [text_of(c) for c in completions], list(columns["reference"]), rows
        )


def load_reward(spec: Scoring) -> RewardFunction:
    """The reward function a recipe's `reward` names."""
    if spec.callable:
        return import_callable(spec.callable, spec.import_root)
    return ScorerReward(make_scorer(spec))


class RecordedReward:
    """Wraps a reward: checks every value is a finite number and keeps them for the rung's statistics."""

    __name__ = "reward"

    def __init__(self, function: RewardFunction) -> None:
        self.function = function
        self.values: list[float] = []

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        state = columns.get("trainer_state")
        step = state.global_step + 1 if state is not None else 0  # the step these rewards are for
        try:
            rewards = list(self.function(prompts=prompts, completions=completions, **columns))
        except ScoringError as err:
            raise ScoringError(str(err), step) from err
        except Exception as err:  # user code: whatever it raises ends the trial with its reason
            raise ScoringError(f"the reward raised {type(err).__name__}: {err}", step) from err
        if len(rewards) != len(completions):
            raise ScoringError(f"the reward returned {len(rewards)} values for {len(completions)} completions", step)
        for value in rewards:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ScoringError(f"the reward returned {value!r}; every reward must be a finite number", step)
        self.values.extend(float(v) for v in rewards)
        return [float(v) for v in rewards]

    def take(self) -> list[float]:
        """The rewards since the last call (one rung's window)."""
        values, self.values = self.values, []
        return values

    def window_metrics(self) -> dict[str, float]:
        """The positive-reward rate of the completions sampled since the last call (one rung's window)."""
        values = self.take()
        return {"train_positive_rate": sum(v > 0 for v in values) / len(values)} if values else {}
