"""The live view during `hpo sweep`: one line per rung and per ending trial, best so far.

Ray Tune's own console output is turned off; these lines are short enough for CI logs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ray.tune import Callback

Write = Callable[[str], object]


def format_params(config: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items()))


class LiveView(Callback):
    def __init__(self, total_trials: int, max_steps: int, write: Write = sys.stdout.write) -> None:
        self.total_trials = total_trials
        self.max_steps = max_steps
        self.write = write
        self.started = time.monotonic()
        self.numbers: dict[str, int] = {}
        self.best: tuple[float, str] | None = None
        self.ended = 0

    def number(self, trial) -> int:
        return self.numbers.setdefault(trial.trial_id, len(self.numbers) + 1)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.write(f"[{self.clock()}] trial {self.number(trial)} started: {format_params(trial.config)}\n")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "objective" not in result:
            return
        label = f"trial {self.number(trial)} step {result['step']}"
        if self.best is None or result["objective"] > self.best[0]:
            self.best = (result["objective"], label)
        parts = [f"objective {result['objective']:+.3f}"]
        for key, name in (("domain_exact_match", "exact match"), ("general_perplexity", "perplexity")):
            if result.get(key) is not None:
                parts.append(f"{name} {result[key]:.3f}")
        if result.get("violation"):
            parts.append(f"FAILING: {result['violation']}")
        best = f"best {self.best[0]:+.3f} ({self.best[1]})"
        self.write(f"[{self.clock()}] {label}/{self.max_steps}: {', '.join(parts)} | {best}\n")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended += 1
        last = trial.last_result or {}
        how = "completed" if last.get("final") else f"stopped at step {last.get('step')}"
        self.write(f"[{self.clock()}] trial {self.number(trial)} {how} ({self.ended}/{self.total_trials} done)\n")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended += 1
        self.write(f"[{self.clock()}] trial {self.number(trial)} failed ({self.ended}/{self.total_trials} done)\n")

    def clock(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"
