"""Stage dpo's tiny sweep: preference pairs made from the tiny example's label rows (chosen: the label; rejected:
the next label), a space wide enough for the tiny model, a DPO sweep and an SFT -> DPO pipeline.

    python tests/stage_fixtures/dpo.py examples/tiny    (after python -m hpo.tiny examples/tiny)
"""

import json
import sys
from pathlib import Path

import yaml

from hpo.tiny import LABELS, stage_documents

SHORT_RUN = {"learning_rate": 1e-2, "beta": 0.1, "lora_rank": 4, "lora_alpha": 8}
SPACE = {
    "stage": "dpo",
    "method": "lora",
    "parameters": {
        "learning_rate": {"type": "float", "low": 1.0e-3, "high": 0.05, "log": True, "default": 1.0e-2},
        "beta": {"type": "float", "low": 0.05, "high": 0.5, "log": True, "default": 0.1},
        "lora_rank": {"type": "choice", "values": [4, 8], "default": 8},
        "lora_alpha": {"type": "choice", "values": [8, 16], "default": 16},
    },
}
SPLITS = ("train", "eval", "test")


def pairs(rows: list[dict]) -> list[dict]:
    """Each label row as a preference pair: its label chosen over the next label in the set."""
    wrong = {label: LABELS[(i + 1) % len(LABELS)] for i, label in enumerate(LABELS)}
    return [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": wrong[r["completion"]]} for r in rows]


def make(tiny: Path) -> Path:
    """data/dpo_*.jsonl, space_dpo.yaml, sweep_dpo.yaml and pipeline_sft_dpo.yaml next to the tiny example."""
    data = {}
    for split in SPLITS:
        rows = [json.loads(line) for line in (tiny / "data" / f"domain_{split}.jsonl").read_text().splitlines()]
        (tiny / "data" / f"dpo_{split}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs(rows)))
        data[f"domain_{split}"] = f"data/dpo_{split}.jsonl"
    (tiny / "space_dpo.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    base = stage_documents()["pipeline"]
    shared = {k: v for k, v in base.items() if k not in ("stages", "cpt", "sft", "rft", "task")}
    stage_data = {**{k: v for k, v in shared["data"].items() if k != "general_mix"}, **data}
    sweep = {**shared, "name": "tiny-dpo", "stage": "dpo", "data": stage_data, "search_space": "space_dpo.yaml"}
    (tiny / "sweep_dpo.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    pipeline = {  # one short trial a stage: the chain, not the search, is what it shows
        **shared,
        "budget": {"trials": 1, "concurrency": 1},
        "scheduler": {"rung_interval": 4, "max_steps": 4, "reduction_factor": 2},
        "name": "tiny-sft-dpo",
        "stages": ["sft", "dpo"],
        "task": {"labels": list(LABELS)},
        "sft": {"search_space": "space.yaml"},
        "dpo": {"search_space": "space_dpo.yaml", "data": {**data, "general_mix": None}, "task": None},
    }
    (tiny / "pipeline_sft_dpo.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return tiny / "sweep_dpo.yaml"


if __name__ == "__main__":
    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/tiny")))
