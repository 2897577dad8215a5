"""RFT rewards: a Python callable or an HTTP endpoint, behind TRL's reward-function signature.

Every reward is called as `reward(prompts, completions, **columns) -> list[float]`, the
way TRL's GRPOTrainer calls it: prompts and completions in chat form (lists of
{"role", "content"} messages), and the dataset's other columns as keyword lists. The
row's `completion` (the reference answer) arrives as `reference`, because GRPO keeps
the name `completion` for itself.

An HTTP endpoint (e.g. a serverless function URL) gets one JSON POST per completion,
{"prompt": text, "completion": text, "reference": text, ...other columns}, and must
answer {"reward": number}. Requests run at most `concurrency` at a time; a request
that times out or fails is retried `retries` times with a short back-off, and one that
still fails raises RewardError: a trial never trains on a made-up reward.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from trainers.imports import import_named
from trainers.recipe import Reward
from trainers.scorers import parse_answer

RewardFunction = Callable[..., list[float]]
BACKOFF_S = 0.2  # first retry waits this long, doubling after each failure
# Keyword arguments TRL adds for its own reward helpers; they are not data and never sent.
TRAINER_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "completion_ids", "environments"})


class RewardError(RuntimeError):
    """A reward could not be computed (endpoint down, bad answer, callable raised).

    `step` is the training step whose rewards failed (0 outside training).
    """

    def __init__(self, message: str, step: int = 0) -> None:
        super().__init__(message)
        self.step = step


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


def post_json(url: str, payload: dict[str, Any], timeout_s: float, retries: int) -> float:
    """The endpoint's reward for one payload, after up to `retries` retries."""
    body = json.dumps(payload).encode()
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                answer = json.loads(response.read())
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as err:
            last_error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            continue
        reward = answer.get("reward") if isinstance(answer, dict) else None
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise RewardError(f'reward endpoint {url} answered {answer!r}; it must answer {{"reward": <number>}}')
        return float(reward)
    raise RewardError(f"reward endpoint {url} failed {retries + 1} times (last: {last_error}); check that it is up")


class HttpReward:
    """A reward served over HTTP, called with TRL's reward-function signature."""

    __name__ = "http_reward"

    def __init__(self, url: str, concurrency: int, timeout_s: float, retries: int) -> None:
        self.url, self.concurrency, self.timeout_s, self.retries = url, concurrency, timeout_s, retries

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        fields = {k: v for k, v in columns.items() if k not in TRAINER_KWARGS}
        payloads = [
            {"prompt": text_of(p), "completion": text_of(c), **{k: v[i] for k, v in fields.items()}}
            for i, (p, c) in enumerate(zip(prompts, completions))
        ]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda p: post_json(self.url, p, self.timeout_s, self.retries), payloads))


def load_reward(spec: Reward) -> RewardFunction:
    if spec.url:
        return HttpReward(spec.url, spec.concurrency, spec.timeout_s, spec.retries)
    if not spec.callable:
        raise ValueError("a reward needs `callable` or `url`")
    return import_callable(spec.callable, spec.import_root)


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
        except RewardError as err:
            raise RewardError(str(err), step) from err
        except Exception as err:  # user code: whatever it raises ends the trial with its reason
            raise RewardError(f"the reward raised {type(err).__name__}: {err}", step) from err
        if len(rewards) != len(completions):
            raise RewardError(f"the reward returned {len(rewards)} values for {len(completions)} completions", step)
        for value in rewards:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RewardError(f"the reward returned {value!r}; every reward must be a finite number", step)
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
