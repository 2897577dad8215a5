"""How a generated answer is scored against its reference.

The parse rule of label answers lives here, shared by the exact-match probe and the
exact-match reward, so that a reward rate and an exact-match rate on the same answers are
the same number.
"""

from __future__ import annotations


def parse_answer(generated: str) -> str:
    """The parse rule: surrounding whitespace stripped, nothing else."""
    return generated.strip()
