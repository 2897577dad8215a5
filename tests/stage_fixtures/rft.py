"""Stage rft's tiny sweep: hpo.tiny's sweep_rft.yaml, and the values its short contract run trains with."""

from pathlib import Path

SHORT_RUN = {"learning_rate": 1e-2, "num_generations": 4, "lora_rank": 4, "lora_alpha": 8}


def make(tiny: Path) -> Path:
    return tiny / "sweep_rft.yaml"
