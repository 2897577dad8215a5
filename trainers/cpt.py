"""Continued pre-training: causal-LM training on raw domain text mixed with general text.

Reads top to bottom: load the base model, mix the domain {"text"} rows with general
{"text"} rows at the trial's mixing ratio, train on every token with TRL's SFTTrainer
(plain language modelling: there is no prompt to mask), warm up then decay along a
cosine, and at every rung run the shared probes (held-out domain perplexity plus the
general probes), save the trainer's full state (the adapter, or the whole model for
`method: full`, with optimizer and scheduler) and hand both to `report`. Standalone:

    python -m trainers.cpt recipe.yaml [--out DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from datasets import Dataset
from transformers import set_seed
from trl import SFTConfig, SFTTrainer

from trainers.callbacks import load_callbacks
from trainers.data import duplicate, mix, read_jsonl
from trainers.models import load_base, training_dtype
from trainers.probes import load_probes
from trainers.recipe import Recipe
from trainers.sft import Report, RungCallback, adapter_config, resumed_metrics, run_standalone, run_training

# Pre-training schedules decay smoothly to the end; a cosine keeps the peak longer than linear.
LR_SCHEDULE = "cosine"


def training_rows(recipe: Recipe) -> list[dict]:
    """Domain passages plus general passages, domain making up the trial's mixing ratio."""
    domain = duplicate(read_jsonl(recipe.data.domain_train), recipe.training.duplication)
    general = read_jsonl(recipe.data.general_mix) if recipe.data.general_mix else []
    rows = mix(domain, general, recipe.hyperparameters.mixing_ratio, recipe.seed)
    return [{"text": row["text"]} for row in rows]


def cpt_config(recipe: Recipe, output_dir: Path) -> SFTConfig:
    hp, training = recipe.hyperparameters, recipe.training
    return SFTConfig(
        output_dir=str(output_dir),
        max_steps=training.max_steps,
        learning_rate=hp.learning_rate,
        warmup_steps=hp.warmup_ratio,  # a value below 1 is a ratio of max_steps
        lr_scheduler_type=LR_SCHEDULE,
        weight_decay=hp.weight_decay,
        per_device_train_batch_size=training.batch_size,
        gradient_accumulation_steps=training.grad_accum,
        max_length=training.max_seq_len,
        dataset_text_field="text",
        gradient_checkpointing=False,  # small models: memory is not the limit, the recompute is pure cost
        seed=recipe.seed,
        data_seed=recipe.seed,
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN loss must reach the divergence check, not be smoothed over
        save_strategy="no",  # RungCallback asks for a save at every rung
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        use_cpu=not torch.cuda.is_available(),
        bf16=training_dtype() == torch.bfloat16,
    )


def train(
    recipe: Recipe, report: Report, work_dir: Path | None = None, resume_from: Path | None = None
) -> dict[str, float]:
    """Train `recipe`, reporting every rung; returns the last rung's metrics.

    `resume_from` is a rung checkpoint of this recipe (as handed to `report`) to go on from.
    """
    torch.set_num_threads(recipe.training.threads)
    set_seed(recipe.seed)
    model, tokenizer = load_base(recipe.model, recipe.start_adapters)
    probes = load_probes(recipe)
    with tempfile.TemporaryDirectory(prefix="cpt-", dir=work_dir) as scratch:
        callback = RungCallback(recipe, probes, tokenizer, report, resumed=resumed_metrics(resume_from))
        trainer = SFTTrainer(
            model=model,
            args=cpt_config(recipe, Path(scratch) / "trainer"),
            train_dataset=Dataset.from_list(training_rows(recipe)),
            processing_class=tokenizer,
            peft_config=adapter_config(recipe),
            callbacks=[callback, *load_callbacks(recipe.training)],
        )
        return run_training(trainer, callback, resume_from)


def main(argv: list[str] | None = None) -> int:
    return run_standalone(train, "cpt", argv)


if __name__ == "__main__":
    sys.exit(main())
