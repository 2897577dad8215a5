"""Stage sft's tiny sweep: hpo.tiny's sweep.yaml, and the values its short contract run trains with."""

from pathlib import Path

SHORT_RUN = {"learning_rate": 1e-2}


def make(tiny: Path) -> Path:
    return tiny / "sweep.yaml"
