"""The keys of a rung result that say how its trial ended, one definition for trainers and engine.

The trainer sets `final` on the last rung of its schedule; the engine (hpo.trial) sets the
others on a failing ending it reports, with `violation` holding the reason.
"""


class Flag:
    """Result keys: 1.0 when set; `violation` is the reason a rung failed or a trial ended (text)."""

    FINAL = "final"  # the last rung of the schedule, or a failing ending
    DIVERGED = "diverged"  # a non-finite loss or gradient norm
    OOM = "oom"  # out of memory at batch size 1
    FAILED = "failed"  # the trial could not go on (e.g. the reward could not be computed)
    GUARDRAIL = "guardrail"  # a rung limit tripped (RFT: KL over its limit, a reward blow-up)
    VIOLATION = "violation"
