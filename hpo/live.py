"""The live view during `hpo sweep`: plain lines for CI logs and terminals alike.

- one line per rung (objective, the domain metric, perplexity, best so far) and per trial start and end;
- with every ending trial, a progress line over the trial budget with an ETA;
- every TABLE_EVERY rungs and at the end, a compact table of all trials (state, rung,
  latest objective and its components).

Ray Tune's own console output is turned off; `hpo sweep --quiet` turns this off too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ray.tune import Callback

from hpo.rundir import Status
from trainers.flags import Flag

Write = Callable[[str], object]
TABLE_EVERY = 8  # rungs between two tables
BAR_WIDTH = 20


def format_params(config: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items()))


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else clock_short(seconds)


def clock_short(seconds: int) -> str:
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def progress_line(done: int, total: int, elapsed: float) -> str:
    """`[#####---------------] 3/12 trials, 01:10 elapsed, ETA 02:20`: the ETA assumes the remaining trials
    take as long on average as the finished ones did (concurrency included)."""
    filled = round(BAR_WIDTH * done / total) if total else BAR_WIDTH
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    eta = clock(elapsed / done * (total - done)) if 0 < done < total else ("done" if done >= total else "?")
    return f"[{bar}] {done}/{total} trials, {clock(elapsed)} elapsed, ETA {eta}"


@dataclass
class TrialRow:
    number: int
    state: str = Status.RUNNING
    step: int | None = None
    objective: float | None = None
    domain_lift: float | None = None
    general_regression: float | None = None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def trial_table(rows: list[TrialRow], max_steps: int) -> str:
    lines = [f"{'trial':>5}  {'state':<10} {'rung':>9}  {'objective':>9}  {'lift':>7}  {'regression':>10}"]
    for r in rows:
        rung = f"{r.step}/{max_steps}" if r.step is not None else "-"
        lines.append(
            f"{r.number:>5}  {r.state:<10} {rung:>9}  {fmt(r.objective, '+.3f'):>9}  "
            f"{fmt(r.domain_lift, '+.3f'):>7}  {fmt(r.general_regression, '.3f'):>10}"
        )
    return "\n".join(lines)


class LiveView(Callback):
    def __init__(
        self,
        total_trials: int,
        max_steps: int,
        write: Write = sys.stdout.write,
        table_every: int = TABLE_EVERY,
        domain_metric: str = "domain_exact_match",
    ) -> None:
        self.total_trials = total_trials
        self.domain_metric = domain_metric  # the rung metric shown beside the objective
        self.max_steps = max_steps
        self.write = write
        self.table_every = table_every
        self.started = time.monotonic()
        self.numbers: dict[str, int] = {}
        self.rows: dict[str, TrialRow] = {}
        self.best: tuple[float, str] | None = None
        self.ended = 0
        self.rungs = 0

    def number(self, trial) -> int:
        return self.numbers.setdefault(trial.trial_id, len(self.numbers) + 1)

    def row(self, trial) -> TrialRow:
        return self.rows.setdefault(trial.trial_id, TrialRow(self.number(trial)))

    def on_trial_start(self, iteration, trials, trial, **info):
        self.row(trial)
        self.write(f"[{self.clock()}] trial {self.number(trial)} started: {format_params(trial.config)}\n")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "objective" not in result:
            return
        row = self.row(trial)
        row.step, row.objective = result.get("step"), result["objective"]
        row.domain_lift, row.general_regression = result.get("domain_lift"), result.get("general_regression")
        label = f"trial {self.number(trial)} step {result['step']}"
        if self.best is None or result["objective"] > self.best[0]:
            self.best = (result["objective"], label)
        parts = [f"objective {result['objective']:+.3f}"]
        shown = (self.domain_metric, self.domain_metric.removeprefix("domain_").replace("_", " "))
        for key, name in (shown, ("general_perplexity", "perplexity")):
            if result.get(key) is not None:
                parts.append(f"{name} {result[key]:.3f}")
        if result.get("violation"):
            parts.append(f"FAILING: {result['violation']}")
        self.write(f"[{self.clock()}] {label}/{self.max_steps}: {', '.join(parts)} | {self.best_text()}\n")
        self.rungs += 1
        if self.table_every and self.rungs % self.table_every == 0:
            self.write_table()

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        how = Status.COMPLETED if last.get(Flag.FINAL) else Status.STOPPED
        self.end(trial, how, how if how == Status.COMPLETED else f"stopped at step {last.get('step')}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.end(trial, "failed", "failed")

    def on_experiment_end(self, trials, **info):
        self.write_table()

    def end(self, trial, state: str, how: str) -> None:
        self.ended += 1
        self.row(trial).state = state
        self.write(f"[{self.clock()}] trial {self.number(trial)} {how} ({self.ended}/{self.total_trials} done)\n")
        elapsed = time.monotonic() - self.started
        self.write(f"[{self.clock()}] {progress_line(self.ended, self.total_trials, elapsed)}\n")

    def write_table(self) -> None:
        if self.rows:
            self.write(trial_table(list(self.rows.values()), self.max_steps) + f"\n{self.best_text()}\n")

    def best_text(self) -> str:
        return f"best {self.best[0]:+.3f} ({self.best[1]})" if self.best else "best -"

    def clock(self) -> str:
        return clock(time.monotonic() - self.started)
