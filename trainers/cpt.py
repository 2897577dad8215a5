"""Continued pre-training: causal-LM training on raw domain text mixed with general text.

Reads top to bottom: the domain {"text"} rows mixed with general {"text"} rows at the
trial's mixing ratio, the SFTConfig for plain language modelling on every token (there is
no prompt to mask) with warmup then cosine decay, and TRL's SFTTrainer handed to the shared
rung loop (trainers.rungs: held-out domain perplexity plus the general probes at every
rung, the trainer's full state saved with it). Standalone:

    python -m trainers.cpt recipe.yaml [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from trl import SFTConfig

from trainers.data import duplicate, mix, read_jsonl
from trainers.recipe import Recipe
from trainers.rungs import Report, common_args, run_standalone, sft_trainer, train_stage

# Pre-training schedules decay smoothly to the end; a cosine keeps the peak longer than linear.
LR_SCHEDULE = "cosine"


def training_rows(recipe: Recipe) -> list[dict]:
    """Domain passages plus general passages, domain making up the trial's mixing ratio."""
    domain = duplicate(read_jsonl(recipe.data.domain_train), recipe.training.duplication)
    general = read_jsonl(recipe.data.general_mix) if recipe.data.general_mix else []
    rows = mix(domain, general, recipe.hyperparameters.mixing_ratio, recipe.seed)
    return [{"text": row["text"]} for row in rows]


def trainer_config(recipe: Recipe, output_dir: Path) -> SFTConfig:
    return SFTConfig(
        **common_args(recipe, output_dir),
        lr_scheduler_type=LR_SCHEDULE,
        max_length=recipe.training.max_seq_len,
        packing=recipe.training.packing,
        dataset_text_field="text",
        include_num_input_tokens_seen="non_padding",
    )


def train(
    recipe: Recipe, report: Report, work_dir: Path | None = None, resume_from: Path | None = None
) -> dict[str, float]:
    """Train `recipe`, reporting every rung; returns the last rung's metrics.

    `resume_from` is a rung checkpoint of this recipe (as handed to `report`) to go on from.
    """
    make_trainer = sft_trainer(recipe, trainer_config, training_rows)
    return train_stage(recipe, report, make_trainer, work_dir=work_dir, resume_from=resume_from)


def main(argv: list[str] | None = None) -> int:
    return run_standalone(train, "cpt", argv)


if __name__ == "__main__":
    sys.exit(main())
