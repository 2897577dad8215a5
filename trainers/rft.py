"""Reinforcement fine-tuning with TRL's GRPO: sampled answers scored by a reward, a KL leash to the start.

Reads top to bottom: load the base model (with an earlier stage's adapter merged in,
when the recipe names one), wrap the sweep's reward, train a new LoRA adapter with
TRL's GRPOTrainer, and at every rung run the shared probes (greedy answers to held-out
prompts scored by the same reward, plus the general probes), add the window's training
statistics and hand it all to `report`. Standalone:

    python -m trainers.rft recipe.yaml [--out DIR]

The reference model of the KL penalty is the starting model itself (the adapter
disabled), so `train_kl` measures how far this stage moved, not how far the base moved.
Each step samples `batch_size` completions: batch_size / num_generations prompts with
num_generations answers each, up to `probes.max_new_tokens` tokens long.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from datasets import Dataset
from transformers import set_seed
from trl import GRPOConfig, GRPOTrainer

from trainers.callbacks import load_callbacks
from trainers.data import chat, duplicate, read_jsonl
from trainers.models import load_base, training_dtype
from trainers.probes import load_probes
from trainers.recipe import Recipe
from trainers.rewards import RecordedReward, load_reward
from trainers.sft import (
    LOSS_WINDOW,
    Report,
    RungCallback,
    lora_config,
    resumed_metrics,
    run_standalone,
    run_training,
)

# GRPO's logged statistics, averaged over each rung's window.
GRPO_WINDOW = {
    **LOSS_WINDOW,
    "reward": "train_reward_mean",
    "kl": "train_kl",
    "completions/mean_length": "train_completion_length",
}


def training_rows(recipe: Recipe) -> list[dict]:
    """Prompts in chat form; the row's completion travels as `reference`, other fields as they are."""
    rows = duplicate(read_jsonl(recipe.data.domain_train), recipe.training.duplication)
    return [
        {
            "prompt": chat(row["prompt"], recipe.system_prompt),
            "reference": row["completion"],
            **{k: v for k, v in row.items() if k not in ("prompt", "completion")},
        }
        for row in rows
    ]


def grpo_config(recipe: Recipe, output_dir: Path) -> GRPOConfig:
    hp, training = recipe.hyperparameters, recipe.training
    return GRPOConfig(
        output_dir=str(output_dir),
        max_steps=training.max_steps,
        learning_rate=hp.learning_rate,
        warmup_steps=hp.warmup_ratio,  # a value below 1 is a ratio of max_steps
        lr_scheduler_type="linear",
        weight_decay=hp.weight_decay,
        per_device_train_batch_size=training.batch_size,
        gradient_accumulation_steps=training.grad_accum,
        beta=hp.beta,
        num_generations=hp.num_generations,
        max_completion_length=recipe.probes.max_new_tokens,
        temperature=hp.temperature,
        gradient_checkpointing=False,  # small models: memory is not the limit, the recompute is pure cost
        seed=recipe.seed,
        data_seed=recipe.seed,
        logging_steps=1,
        logging_nan_inf_filter=False,
        save_strategy="no",  # RungCallback asks for a save at every rung
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        bf16=training_dtype() == torch.bfloat16,
    )


def reward_window(reward: RecordedReward):
    """The positive-reward rate of the completions sampled since the last rung."""

    def metrics() -> dict[str, float]:
        values = reward.take()
        return {"train_positive_rate": sum(v > 0 for v in values) / len(values)} if values else {}

    return metrics


def train(
    recipe: Recipe, report: Report, work_dir: Path | None = None, resume_from: Path | None = None
) -> dict[str, float]:
    """Train `recipe`, reporting every rung; returns the last rung's metrics.

    `resume_from` is a rung checkpoint of this recipe (as handed to `report`) to go on from.
    """
    if recipe.reward is None:
        raise ValueError("stage rft needs a reward (task.reward in the sweep file)")
    torch.set_num_threads(recipe.training.threads)
    set_seed(recipe.seed)
    model, tokenizer = load_base(recipe.model, recipe.start_adapters)
    probes = load_probes(recipe)
    reward = RecordedReward(load_reward(recipe.reward))
    with tempfile.TemporaryDirectory(prefix="rft-", dir=work_dir) as scratch:
        callback = RungCallback(
            recipe,
            probes,
            tokenizer,
            report,
            window=GRPO_WINDOW,
            extra=reward_window(reward),
            resumed=resumed_metrics(resume_from),
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=grpo_config(recipe, Path(scratch) / "trainer"),
            train_dataset=Dataset.from_list(training_rows(recipe)),
            processing_class=tokenizer,
            peft_config=lora_config(recipe),
            callbacks=[callback, *load_callbacks(recipe.training)],
        )
        return run_training(trainer, callback, resume_from)


def main(argv: list[str] | None = None) -> int:
    return run_standalone(train, "rft", argv)


if __name__ == "__main__":
    sys.exit(main())
