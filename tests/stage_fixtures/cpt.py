"""Stage cpt's tiny sweep: hpo.tiny's sweep_cpt.yaml, and the values its short contract run trains with."""

from pathlib import Path

SHORT_RUN = {"learning_rate": 1e-2, "lora_rank": 4, "lora_alpha": 8, "mixing_ratio": 0.7}


def make(tiny: Path) -> Path:
    return tiny / "sweep_cpt.yaml"
