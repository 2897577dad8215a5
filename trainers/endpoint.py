"""An HTTP scorer: one JSON POST per answer, on pooled connections (httpx).

The endpoint gets {"prompt", "completion", "reference", ...the row's other fields} and
answers {"score": number} (an RFT reward endpoint may answer {"reward": number}). At most
`concurrency` requests are in flight. What may pass on a second try is retried, up to
`retries` times with jittered exponential back-off: a timeout, a lost connection, 429 and
5xx answers. A 4xx answer or a body that is not such a JSON object fails at once with what
the endpoint said: retrying cannot fix the request. Whatever still fails raises ScoringError,
so a trial never trains on, or is judged by, a made-up score.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from trainers.shared import ScoringError

ANSWER_KEYS = ("score", "reward")
BACKOFF_S = 0.2  # the first retry waits about this long, doubling after each failure
MAX_BODY = 300  # characters of an endpoint's answer quoted in an error


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


def backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (1, 2, ...): exponential, with full jitter."""
    return random.uniform(0.5, 1.5) * BACKOFF_S * 2 ** (attempt - 1)


def answer_value(url: str, response: httpx.Response) -> float:
    """The number an endpoint answered; ScoringError naming what it said otherwise."""
    try:
        answer = response.json()
    except ValueError as err:
        raise ScoringError(f"scoring endpoint {url} answered {response.text[:MAX_BODY]!r}, not JSON") from err
    value = next((answer[k] for k in ANSWER_KEYS if isinstance(answer, dict) and k in answer), None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScoringError(f'scoring endpoint {url} answered {answer!r}; it must answer {{"score": <number>}}')
    return float(value)


class Endpoint:
    """A scoring endpoint with its pooled client; `score_all` scores a batch of payloads in parallel."""

    def __init__(self, url: str, concurrency: int, timeout_s: float, retries: int) -> None:
        self.url, self.concurrency, self.retries = url, concurrency, retries
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = httpx.Client(timeout=timeout_s, limits=limits)

    def score(self, payload: dict[str, Any]) -> float:
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(backoff(attempt))
            try:
                response = self.client.post(self.url, json=payload)
            except httpx.TransportError as err:  # timeouts and connection errors
                last = f"{type(err).__name__}: {err}"
                continue
            if retryable(response.status_code):
                last = f"HTTP {response.status_code}: {response.text[:MAX_BODY]}"
                continue
            if response.is_error:
                raise ScoringError(
                    f"scoring endpoint {self.url} refused the request: HTTP {response.status_code}: "
                    f"{response.text[:MAX_BODY]} (fix the endpoint or the data it is sent)"
                )
            return answer_value(self.url, response)
        raise ScoringError(f"scoring endpoint {self.url} failed {self.retries + 1} times (last: {last}); check that it is up")

    def score_all(self, payloads: list[dict[str, Any]]) -> list[float]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self.score, payloads))

    def score_batch(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
    ) -> list[float]:
        """A scorer's batch (trainers.scorers): one payload per answer, {"prompt", "completion", "reference", ...row}."""
        payloads = [
            {"prompt": p, "completion": c, "reference": r, **row}
            for p, c, r, row in zip(prompts, completions, references, rows)
        ]
        return self.score_all(payloads)
