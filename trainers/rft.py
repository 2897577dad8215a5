"""Reinforcement fine-tuning with TRL's GRPO: sampled answers scored by a reward, a KL leash to the start.

The stage (`RFT`) trains on prompts alone (no general rows mixed in), needs a reward
(`task.reward`), is judged on the mean reward of greedy answers to held-out prompts, adds
the KL and reward blow-up limits to its rungs, and refuses to start from a model that almost
never earns a positive reward (`rft_gate`). Its own hyperparameters are GRPO's.

Its trainer reads top to bottom: prompts in chat form (the row's completion travels as
`reference`), the GRPOConfig, and TRL's GRPOTrainer with the sweep's reward handed to the
shared rung loop (trainers.rungs), which at every rung also scores greedy answers to held-out
prompts with the same reward and adds the window's training statistics. The KL reference is
the starting model itself (the adapter disabled), so `train_kl` measures how far this stage
moved. Each step samples `batch_size` completions, `num_generations` per prompt.

    python -m trainers.rft recipe.yaml [--out DIR]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainers.data import chat, duplicate, read_jsonl
from trainers.recipe import Hyperparameters, Recipe, tunable
from trainers.shared import DomainMetric
from trainers.stage import Report, Stage

if TYPE_CHECKING:
    from trl import GRPOConfig

MIN_POSITIVE_RATE = 0.05  # RFT refused below this base positive-reward rate
DIMINISHING_RATE = 0.95  # and warned about above this one
DEFAULT_MAX_KL = 0.5  # nats per token to the reference: far past this the policy has left the start behind
DEFAULT_MIN_LENGTH_RATIO = 0.5  # reward up while length halves between rungs: reward hacking
REWARD_MEAN = DomainMetric("reward_mean")
# GRPO's logged statistics, averaged over each rung's window.
GRPO_WINDOW = {
    "loss": "train_loss",
    "reward": "train_reward_mean",
    "kl": "train_kl",
    "completions/mean_length": "train_completion_length",
}


@dataclass(frozen=True)
class GRPOHyperparameters(Hyperparameters):
    """GRPO's own hyperparameters beside the shared ones, with the GRPO paper's values."""

    beta: float = tunable(0.04, 0.0, 10.0, low_open=True)  # KL coefficient; 0 would drop the reference and its KL
    num_generations: int = tunable(4, 2, 64)  # completions sampled per prompt: a group compares at least two
    temperature: float = tunable(1.0, 0.0, 2.0, low_open=True)  # sampling temperature; 0: every answer the same


def rft_gate(positive_rate: float, prompts: int, allow_low: bool) -> tuple[str, str]:
    """(refusal, warning) for RFT from the base model's positive-reward rate; either may be empty.

    RFT learns from the spread of rewards within a group of sampled answers: a base that almost
    never earns a positive reward has nothing to reinforce (run SFT first), one that almost
    always does has little left to gain.
    """
    rate = f"{positive_rate:.3f} on {prompts} held-out prompts"
    if positive_rate < MIN_POSITIVE_RATE:
        if allow_low:
            return "", f"the base model's positive-reward rate is {rate} (< {MIN_POSITIVE_RATE:g}); RFT runs anyway"
        return (
            f"the base model's positive-reward rate must be >= {MIN_POSITIVE_RATE:g} for RFT, got {rate}: "
            "with almost no positive rewards there is nothing to reinforce; run SFT first "
            "(e.g. stages: [sft, rft]), or pass --allow-low-reward to run it anyway",
            "",
        )
    if positive_rate > DIMINISHING_RATE:
        return "", (
            f"the base model's positive-reward rate is already {rate} (> {DIMINISHING_RATE:g}): "
            "diminishing returns, RFT has little left to gain on these prompts (a harder set or a stricter reward would)"
        )
    return "", ""


class RFTStage(Stage):
    name = "rft"
    methods = ("lora",)
    spaces = {"lora": "rft"}
    hyperparameters = GRPOHyperparameters
    scale_up = "The reward is being learnt: a longer RFT run on more prompts, or full-rank RFT, is the next step."

    def read_task(self, task):
        """A required section naming the reward; labels are optional, the metric can only be its own (`reward`)."""
        task.require()
        task.labels()
        task.own_metric("reward")
        task.reward()

    def read_data(self, data):
        data.no_general_mix("trains on prompts alone")

    def reference_scoring(self, metric, reward):
        return reward

    def sweep_problems(self, training, values):
        """GRPO splits each batch into groups of num_generations answers: every value must divide it; and
        sampled completions to prompts leave nothing to pack."""
        problems = []
        if True in values("packing"):
            problems.append(("training.packing", f"stage {self.name} samples completions to prompts: nothing to pack (remove it)"))
        batch = training.rows_per_step()
        bad = [v for v in values("num_generations") if isinstance(v, int) and v > 0 and batch % v]
        if bad:
            problems.append(
                (
                    "training.batch_size",
                    f"batch_size x grad_accum ({batch}) must be divisible by every num_generations, "
                    f"got {', '.join(map(str, bad))} (change the batch or the space's num_generations values)",
                )
            )
        return problems

    def rung_limits(self):
        """The KL to the start and the reward blow-up stop a trial at the rung that crosses them."""
        return {"max_kl": DEFAULT_MAX_KL, "min_length_ratio": DEFAULT_MIN_LENGTH_RATIO}

    def rows_per_step(self, batch, hyperparameters):
        """Each batch holds num_generations answers to each prompt."""
        return batch / hyperparameters.num_generations

    def domain_metric(self, scoring):
        return REWARD_MEAN

    def domain_probe(self, model, tokenizer, probes):
        """Greedy answers to held-out prompts rewarded as GRPO rewards them."""
        from trainers.probes import reward_probe

        return reward_probe(model, tokenizer, probes)

    def chance(self, recipe, probes):
        return {}  # a reward is not a label: guessing has no defined score

    def baseline_cacheable(self, recipe):
        return False  # the reward is code (or a service) whose behaviour a cache cannot see

    def start_gate(self, metrics, prompts, allow):
        refusal, warning = rft_gate(metrics["positive_reward_rate"], prompts, allow)
        return (f"task.reward: {refusal}" if refusal else ""), warning

    def train(self, recipe, report, work_dir=None, resume_from=None):
        return train(recipe, report, work_dir, resume_from)

    def trainer_config(self, recipe, output_dir=Path("output")):
        return trainer_config(recipe, output_dir)


RFT = RFTStage()


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
    from trl import GRPOConfig

    from trainers.rungs import common_args

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
    from datasets import Dataset
    from trl import GRPOTrainer

    from trainers.rewards import RecordedReward, load_reward
    from trainers.rungs import lora_config, train_stage

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
        RFT.domain_probe,
        work_dir=work_dir,
        resume_from=resume_from,
        window=GRPO_WINDOW,
        extra=reward.window_metrics,
    )


def main(argv: list[str] | None = None) -> int:
    return RFT.main(argv)


if __name__ == "__main__":
    sys.exit(main())
