"""Continued pre-training: causal-LM training on raw domain text mixed with general text.

The stage (`CPT`) trains on {"text"} passages, reads no task (its metric is held-out domain
perplexity) and scores no answers. Its trainer reads top to bottom: the domain rows mixed
with general {"text"} rows at the trial's mixing ratio, the SFTConfig for plain language
modelling on every token (there is no prompt to mask) with warmup then cosine decay, and
TRL's SFTTrainer handed to the shared rung loop (trainers.rungs: held-out domain perplexity
plus the general probes at every rung, the trainer's full state saved with it). Standalone:

    python -m trainers.cpt recipe.yaml [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from trainers.data import TEXT_FIELDS, duplicate, mix, read_jsonl
from trainers.recipe import Recipe
from trainers.shared import DomainMetric
from trainers.stage import Report, Stage

if TYPE_CHECKING:
    from trl import SFTConfig

# Pre-training schedules decay smoothly to the end; a cosine keeps the peak longer than linear.
LR_SCHEDULE = "cosine"
PERPLEXITY = DomainMetric("domain_perplexity", higher_is_better=False)


class CPTStage(Stage):
    name = "cpt"
    spaces = {"lora": "cpt"}
    row_fields = TEXT_FIELDS
    scale_up = (
        "The domain text is being learnt: a full-rank continued pre-training run, then SFT on the task, "
        "is the next step."
    )

    def read_task(self, task):
        """An optional section whose metric can only be its own (`perplexity`)."""
        task.own_metric("perplexity")

    def reference_scoring(self, metric, reward):
        return None  # passages have no reference answer

    def domain_metric(self, scoring):
        return PERPLEXITY

    def domain_probe(self, model, tokenizer, probes):
        """Held-out domain perplexity; each passage's mean log-likelihood per token is its score."""
        from trainers.probes import perplexity_probe

        return perplexity_probe(model, tokenizer, probes)

    def train(self, recipe, report, work_dir=None, resume_from=None):
        return train(recipe, report, work_dir, resume_from)

    def trainer_config(self, recipe, output_dir=Path("output")):
        return trainer_config(recipe, output_dir)


CPT = CPTStage()


def training_rows(recipe: Recipe) -> list[dict]:
    """Domain passages plus general passages, domain making up the trial's mixing ratio."""
    domain = duplicate(read_jsonl(recipe.data.domain_train), recipe.training.duplication)
    general = read_jsonl(recipe.data.general_mix) if recipe.data.general_mix else []
    rows = mix(domain, general, recipe.hyperparameters.mixing_ratio, recipe.seed)
    return [{"text": row["text"]} for row in rows]


def trainer_config(recipe: Recipe, output_dir: Path) -> SFTConfig:
    from trl import SFTConfig

    from trainers.rungs import common_args

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
    from trainers.rungs import sft_trainer, train_stage

    make_trainer = sft_trainer(recipe, trainer_config, training_rows)
    return train_stage(recipe, report, make_trainer, CPT.domain_probe, work_dir=work_dir, resume_from=resume_from)


def main(argv: list[str] | None = None) -> int:
    return CPT.main(argv)


if __name__ == "__main__":
    sys.exit(main())
