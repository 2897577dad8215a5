"""Why a trial must stop at a rung although its objective is defined: its KL over the limit, or a
reward blow-up (training reward up while the completions collapse in length: reward hacking)."""

from __future__ import annotations

from collections.abc import Mapping

from hpo.search.objective import kl_violation


def reward_blowup(
    current: Mapping[str, float], previous: Mapping[str, float] | None, min_length_ratio: float | None
) -> str:
    """Why this rung looks like reward hacking (reward up, completion length collapsed), or empty."""
    if min_length_ratio is None or previous is None:
        return ""
    keys = ("train_reward_mean", "train_completion_length")
    if not all(k in current and k in previous for k in keys):
        return ""
    reward_before, reward_now = previous["train_reward_mean"], current["train_reward_mean"]
    length_before, length_now = previous["train_completion_length"], current["train_completion_length"]
    if reward_now > reward_before and length_now < min_length_ratio * length_before:
        return (
            f"reward blow-up: training reward {reward_before:.3g} -> {reward_now:.3g} while completion length "
            f"fell {length_before:.3g} -> {length_now:.3g} tokens (< {min_length_ratio:g} of the previous rung)"
        )
    return ""


def rung_stop_reason(
    current: Mapping[str, float],
    previous: Mapping[str, float] | None,
    max_kl: float | None,
    min_length_ratio: float | None,
) -> str:
    """Why an RFT trial must stop at this rung (KL over its limit, or a reward blow-up), or empty."""
    return kl_violation(current, max_kl) or reward_blowup(current, previous, min_length_ratio)
