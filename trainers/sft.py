"""Supervised fine-tuning with TRL + PEFT LoRA on a domain/general mix, scored at every rung.

The stage (`SFT`) is the base stage's defaults: prompt-completion rows mixed with general
instruction rows, judged on its generated answers by the task's scorer. Its trainer reads
top to bottom: the rows in TRL's conversational prompt-completion form, the SFTConfig (loss
on the completion only), and TRL's SFTTrainer handed to the shared rung loop
(trainers.rungs), which loads the base model, probes and reports at every rung, and resumes
from a rung checkpoint (`resume_from`). `method: full` trains every weight instead of a
LoRA adapter; the rung's checkpoint then holds the whole model. Standalone:

    python -m trainers.sft recipe.yaml [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from trainers.data import chat, duplicate, mix, read_jsonl
from trainers.recipe import Recipe
from trainers.stage import Report, Stage

if TYPE_CHECKING:
    from trl import SFTConfig


class SFTStage(Stage):
    name = "sft"
    spaces = {"lora": "sft_lora", "full": "sft_full"}
    scale_up = (
        "LoRA has shown the task is learnable from this data: a full-rank SFT run, or RFT where answers "
        "can be checked automatically, is the next step."
    )

    def train(self, recipe, report, work_dir=None, resume_from=None):
        return train(recipe, report, work_dir, resume_from)

    def trainer_config(self, recipe, output_dir=Path("output")):
        return trainer_config(recipe, output_dir)


SFT = SFTStage()


def training_rows(recipe: Recipe) -> list[dict]:
    """Domain rows mixed with general instruction rows, in TRL's conversational prompt-completion form."""
    domain = duplicate(read_jsonl(recipe.data.domain_train), recipe.training.duplication)
    general = read_jsonl(recipe.data.general_mix) if recipe.data.general_mix else []
    rows = mix(domain, general, recipe.hyperparameters.mixing_ratio, recipe.seed)
    return [
        {
            "prompt": chat(row["prompt"], recipe.system_prompt),
            "completion": [{"role": "assistant", "content": row["completion"]}],
        }
        for row in rows
    ]


def trainer_config(recipe: Recipe, output_dir: Path) -> SFTConfig:
    from trl import SFTConfig

    from trainers.rungs import common_args

    return SFTConfig(
        **common_args(recipe, output_dir),
        lr_scheduler_type="linear",
        max_length=recipe.training.max_seq_len,
        packing=recipe.training.packing,
        completion_only_loss=True,
        include_num_input_tokens_seen="non_padding",
    )


def train(
    recipe: Recipe, report: Report, work_dir: Path | None = None, resume_from: Path | None = None
) -> dict[str, float]:
    """Train `recipe`, reporting every rung; returns the last rung's metrics.

    `resume_from` is a rung checkpoint of this recipe (as handed to `report`) to go on from.
    """
    from trainers.rungs import sft_trainer, train_stage

    make_trainer = sft_trainer(recipe, trainer_config, training_rows)
    return train_stage(recipe, report, make_trainer, SFT.domain_probe, work_dir=work_dir, resume_from=resume_from)


def main(argv: list[str] | None = None) -> int:
    return SFT.main(argv)


if __name__ == "__main__":
    sys.exit(main())
