"""The live view during `hpo sweep`: plain lines for CI logs and terminals alike.

- one line per rung (objective, the domain metric, perplexity, best so far) and per trial start and end;
- one line when a trial's worker is lost (how, and where the trial goes on from), and the
  one-line reason of every trial that fails;
- with every ending trial, a progress line over the trial budget with an ETA;
- every TABLE_EVERY rungs and at the end, a compact table of all trials (state, rung,
  latest objective and its components).

Trials are numbered in the order they started, by their recorded id (hpo.run.continuation), so a
resumed sweep's view (`seed`) goes on with the numbers, the count of ended trials and the best
rung the stopped sweep had: the best is the passing rung with the highest objective, the one
`hpo export` picks. Ray Tune's own console output is turned off; `hpo sweep --quiet` turns this
off too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ray.tune import Callback
from ray.tune.experiment import Trial

from hpo.results.rundir import Status, TrialTable, ending_status, passes
from hpo.run.continuation import recorded_id, trial_params
from hpo.run.workers import failure_line, lost_for_memory
from trainers.shared import Flag

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


def progress_line(done: int, total: int, elapsed: float, before: int = 0) -> str:
    """`[#####---------------] 3/12 trials, 01:10 elapsed, ETA 02:20`: the ETA assumes the remaining trials
    take as long on average as the ones that ended in the `elapsed` time (`done - before`; concurrency
    included) did."""
    filled = round(BAR_WIDTH * done / total) if total else BAR_WIDTH
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    timed = done - before
    eta = clock(elapsed / timed * (total - done)) if 0 < timed and done < total else ("done" if done >= total else "?")
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
        self.ended_before = 0  # trials a stopped sweep ended, before this view started
        self.rungs = 0

    def seed(self, table: TrialTable) -> None:
        """Go on from a stopped sweep's record: its trials' numbers, states and last rungs, and its best."""
        for row in sorted(
            table.rows.values(), key=lambda r: (r.get("trial_started_at") or r["recorded_at"], r["step"])
        ):
            trial_id = row["trial_id"]
            view = self.rows.setdefault(trial_id, TrialRow(self.numbers.setdefault(trial_id, len(self.numbers) + 1)))
            self.note(view, row)
            self.note_best(row, f"trial {view.number} step {row['step']}")
        for trial_id, view in self.rows.items():
            view.state = table.status[trial_id][0]
        self.ended = self.ended_before = sum(1 for view in self.rows.values() if view.state != Status.RUNNING)

    def number(self, trial) -> int:
        return self.numbers.setdefault(recorded_id(trial), len(self.numbers) + 1)

    def row(self, trial) -> TrialRow:
        return self.rows.setdefault(recorded_id(trial), TrialRow(self.number(trial)))

    def on_trial_start(self, iteration, trials, trial, **info):
        row = self.row(trial)
        how = f"continued from step {row.step}" if row.step is not None else "started"
        self.write(f"[{self.clock()}] trial {row.number} {how}: {format_params(trial_params(trial.config))}\n")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "objective" not in result:
            return
        row = self.row(trial)
        self.note(row, result)
        label = f"trial {row.number} step {result['step']}"
        self.note_best(result, label)
        parts = [f"objective {result['objective']:+.3f}"]
        shown = (self.domain_metric, self.domain_metric.removeprefix("domain_").replace("_", " "))
        for key, name in (shown, ("general_perplexity", "perplexity")):
            if result.get(key) is not None:
                parts.append(f"{name} {result[key]:.3f}")
        if result.get(Flag.VIOLATION):
            parts.append(f"FAILING: {result['violation']}")
        self.write(f"[{self.clock()}] {label}/{self.max_steps}: {', '.join(parts)} | {self.best_text()}\n")
        self.rungs += 1
        if self.table_every and self.rungs % self.table_every == 0:
            self.write_table()

    def note(self, row: TrialRow, result: dict) -> None:
        row.step, row.objective = result.get("step"), result.get("objective")
        row.domain_lift, row.general_regression = result.get("domain_lift"), result.get("general_regression")

    def note_best(self, result: dict, label: str) -> None:
        if passes(result) and (self.best is None or result["objective"] > self.best[0]):
            self.best = (result["objective"], label)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        state = ending_status(last) or Status.STOPPED
        how = state if state != Status.STOPPED else f"stopped at step {last.get('step')}"
        self.end(trial, state, how)

    def on_trial_recover(self, iteration, trials, trial, **info):
        step = (trial.last_result or {}).get("step")
        where = f"step {step}" if step else "the start"
        smaller = " with half the micro-batch" if lost_for_memory(trial) else ""
        number = self.number(trial)
        self.write(f"[{self.clock()}] trial {number}: {failure_line(trial)}; it goes on from {where}{smaller}\n")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.end(trial, Status.ERROR, f"failed: {failure_line(trial)}")

    def on_experiment_end(self, trials, **info):
        for trial in trials:  # failed by Ray without telling the callbacks (hpo.run.recorder does the same)
            if trial.status == Trial.ERROR and self.row(trial).state != Status.ERROR:
                self.on_trial_error(0, trials, trial)
        self.write_table()

    def end(self, trial, state: str, how: str) -> None:
        self.ended += 1
        self.row(trial).state = state
        self.write(f"[{self.clock()}] trial {self.number(trial)} {how} ({self.ended}/{self.total_trials} done)\n")
        elapsed = time.monotonic() - self.started
        self.write(f"[{self.clock()}] {progress_line(self.ended, self.total_trials, elapsed, self.ended_before)}\n")

    def write_table(self) -> None:
        if self.rows:
            self.write(trial_table(list(self.rows.values()), self.max_steps) + f"\n{self.best_text()}\n")

    def best_text(self) -> str:
        return f"best {self.best[0]:+.3f} ({self.best[1]})" if self.best else "best - (no passing rung yet)"

    def clock(self) -> str:
        return clock(time.monotonic() - self.started)
