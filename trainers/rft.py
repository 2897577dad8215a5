"""Reinforcement fine-tuning with TRL's GRPO: sampled answers scored by a reward, a KL leash to the start.

Reads top to bottom: prompts in chat form (the row's completion travels as `reference`),
the GRPOConfig, and TRL's GRPOTrainer with the sweep's reward handed to the shared rung
loop (trainers.rungs), which at every rung also scores greedy answers to held-out prompts
with the same reward and adds the window's training statistics. The KL reference is the
starting model itself (the adapter disabled), so `train_kl` measures how far this stage
moved. Each step samples `batch_size` completions, `num_generations` per prompt.

    python -m trainers.rft recipe.yaml [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from trainers.data import chat, duplicate, read_jsonl
from trainers.recipe import Recipe
from trainers.rewards import RecordedReward, load_reward
from trainers.rungs import LOSS_WINDOW, Report, common_args, lora_config, run_standalone, train_stage

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


def trainer_config(recipe: Recipe, output_dir: Path) -> GRPOConfig:
    hp = recipe.hyperparameters
    return GRPOConfig(
        **common_args(recipe, output_dir),
        lr_scheduler_type="linear",
        beta=hp.beta,
        num_generations=hp.num_generations,
        max_completion_length=recipe.probes.max_new_tokens,
        temperature=hp.temperature,
    )


def train(
    recipe: Recipe, report: Report, work_dir: Path | None = None, resume_from: Path | None = None
) -> dict[str, float]:
    """Train `recipe`, reporting every rung; returns the last rung's metrics.

    `resume_from` is a rung checkpoint of this recipe (as handed to `report`) to go on from.
    """
    if recipe.reward is None:
        raise ValueError("stage rft needs a reward (task.reward in the sweep file)")
    reward = RecordedReward(load_reward(recipe.reward))

    def make_trainer(model, tokenizer, output_dir: Path, callbacks: list) -> GRPOTrainer:
        return GRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=trainer_config(recipe, output_dir),
            train_dataset=Dataset.from_list(training_rows(recipe)),
            processing_class=tokenizer,
            peft_config=lora_config(recipe),
            callbacks=callbacks,
        )

    return train_stage(
        recipe,
        report,
        make_trainer,
        work_dir=work_dir,
        resume_from=resume_from,
        window=GRPO_WINDOW,
        extra=reward.window_metrics,
    )


def main(argv: list[str] | None = None) -> int:
    return run_standalone(train, "rft", argv)


if __name__ == "__main__":
    sys.exit(main())
