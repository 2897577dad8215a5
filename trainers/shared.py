"""What the trainers and the engine share, torch-free: result flags, the errors a trial ends with, scoring specs.

Both sides import this module and nothing imports back from it, so the engine (hpo/) can
catch a trainer's errors and read its flags without importing torch, and the modules that
hold the behaviour (trainers.rungs, trainers.scorers, trainers.stages) sit above it.

- `Flag`: the keys of a rung result that say how its trial ended;
- `INTERVAL_SUFFIXES`: the keys beside a figure that hold its 95% interval and sample size;
- `ScoringError`, `Diverged`, `OutOfMemory`: why a trial cannot go on;
- `Scoring`: how answers are scored or rewarded, as the sweep file and the recipe give it;
- `DomainMetric`: the rung metric a stage is judged on, and which way is better.
"""

from __future__ import annotations

from dataclasses import dataclass


class Flag:
    """Result keys: 1.0 when set; `violation` is the reason a rung failed or a trial ended (text).

    The trainer sets `final` on the last rung of its schedule; the engine (hpo.run.trial) sets the
    others on a failing ending it reports, with `violation` holding the reason.
    """

    FINAL = "final"  # the last rung of the schedule, or a failing ending
    DIVERGED = "diverged"  # a non-finite loss or gradient norm
    OOM = "oom"  # out of memory at batch size 1
    FAILED = "failed"  # the trial could not go on (e.g. the reward could not be computed)
    GUARDRAIL = "guardrail"  # a rung limit tripped (RFT: KL over its limit, a reward blow-up)
    VIOLATION = "violation"


# A figure `name` with an interval comes with `name_low`, `name_high` (its 95% interval) and `name_n` (its sample size).
INTERVAL_SUFFIXES = ("_low", "_high", "_n")
LOSS_TILE_BYTES = 32 * 1024**2  # one float32 tile of [tokens, vocabulary columns] of the CPU loss (trainers.lm_loss)


class ScoringError(RuntimeError):
    """An answer could not be scored (an endpoint down or refusing, user code raising, a bad value).

    `step` is the training step whose scores failed (0 outside training). A trial never goes on
    with a made-up score.
    """

    def __init__(self, message: str, step: int = 0) -> None:
        super().__init__(message)
        self.step = step


class Diverged(RuntimeError):
    """Training produced a non-finite loss or gradient norm."""

    def __init__(self, step: int, what: str, value: float) -> None:
        self.step, self.what, self.value = step, what, value
        super().__init__(f"{what} became {value} at step {step}")


class OutOfMemory(RuntimeError):
    """The accelerator ran out of memory during training, at `step` with micro-batch `batch_size`."""

    def __init__(self, step: int, batch_size: int) -> None:
        self.step, self.batch_size = step, batch_size
        super().__init__(f"out of memory at step {step} with batch size {batch_size}")


@dataclass(frozen=True)
class Scoring:
    """How answers are scored (SFT's metric) or rewarded (RFT's reward).

    - `scorer`: a built-in scorer (trainers.scorers) or "package.module:function" with the
      signature `score(prompt, completion, reference, **row) -> float` (or an object with
      `score_batch`, trainers.scorers);
    - `url`: an HTTP scorer, one JSON POST per answer answered {"score": number} (or
      {"reward": number}); at most `concurrency` in flight, `timeout_s` each, `retries` more
      attempts for timeouts, lost connections, 429 and 5xx answers;
    - `callable` (RFT only): a TRL reward function "package.module:function",
      `reward(prompts, completions, **columns) -> list[float]`.

    `pattern` is the regex scorer's (a row's own `pattern` field wins); `import_root` (the
    sweep file's folder) goes first on the import path for user code.
    """

    scorer: str | None = None
    callable: str | None = None
    url: str | None = None
    pattern: str | None = None
    import_root: str | None = None
    concurrency: int = 4
    timeout_s: float = 10.0
    retries: int = 2

    @property
    def metric_key(self) -> str:
        """The rung metric's name after `domain_`: the scorer's name (a built-in's, or the `name` of a user's
        "package.module:name"); `score` for an HTTP scorer."""
        if self.url is not None or self.scorer is None:
            return "score"
        return self.scorer.rpartition(":")[2]


EXACT_MATCH = Scoring(scorer="exact_match")


@dataclass(frozen=True)
class DomainMetric:
    """The rung metric a stage is judged on, and which way is better."""

    name: str
    higher_is_better: bool = True
