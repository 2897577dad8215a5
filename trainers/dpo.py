"""Preference tuning with TRL's DPO: a prompt, a chosen answer and a rejected one; a KL leash to the start.

The stage (`DPO`) trains on {"prompt", "chosen", "rejected"} rows alone (no general rows
mixed in), reads no task (its metric is its own) and has its own hyperparameters: DPO's
KL coefficient `beta`, and TRL's published defaults (DPOConfig's learning rate 1e-6 and beta
0.1, TRL's LoRA rank 16 and alpha 32, no warmup). The reference model is the starting model:
the adapter switched off (LoRA), or a frozen copy of the start (full rank), so that a
pipeline's DPO stage pulls towards the SFT stage it started from.

Its domain metric, `preference_accuracy`, is the share of held-out pairs on which the model
gives the whole chosen answer a higher log-likelihood than the whole rejected one (summed
over the answer's tokens, end of turn included, after the chat template), with its Wilson
interval; `preference_margin` is the mean of that log-likelihood difference in nats. Both
are defined for any model, the starting one included, so every rung is judged pairwise
against the start like every stage. (DPO's implicit reward margin, beta times the difference
of the two answers' log-ratios to the reference, is 0 for the start by definition; the rung
records TRL's training-window figures of it as `train_reward_margin` and
`train_reward_accuracy`.)

Its trainer reads top to bottom: the pairs in TRL's conversational preference form, the
DPOConfig, and TRL's DPOTrainer handed to the shared rung loop (trainers.rungs). Standalone:

    python -m trainers.dpo recipe.yaml [--out DIR]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.data import chat, duplicate, read_jsonl
from trainers.recipe import Hyperparameters, Recipe, tunable
from trainers.shared import DomainMetric
from trainers.stage import Report, Stage

if TYPE_CHECKING:
    from trl import DPOConfig

PREFERENCE_ACCURACY = DomainMetric("preference_accuracy")
PROBE_BATCH = 8  # answers scored a forward pass: the logits of 8 answers of ~100 tokens are ~170 MB at SmolLM2's vocabulary
# DPO's logged statistics, averaged over each rung's window: its implicit reward (beta x log-ratio to the reference).
DPO_WINDOW = {"loss": "train_loss", "rewards/margins": "train_reward_margin", "rewards/accuracies": "train_reward_accuracy"}


@dataclass(frozen=True)
class DPOHyperparameters(Hyperparameters):
    """DPO's hyperparameters at TRL's published defaults (DPOConfig, and its command's LoRA settings)."""

    learning_rate: float = tunable(1e-6, 0.0, 1.0, low_open=True)
    lora_rank: int = tunable(16, 1, 1024)
    lora_alpha: int = tunable(32, 1, 4096)
    warmup_ratio: float = tunable(0.0, 0.0, 0.9)
    beta: float = tunable(0.1, 0.0, 10.0, low_open=True)  # the KL coefficient: higher stays nearer the reference


class DPOStage(Stage):
    name = "dpo"
    spaces = {"lora": "dpo"}
    hyperparameters = DPOHyperparameters
    row_fields = ("prompt", "chosen", "rejected")
    scale_up = "The preferences are being learnt: more preference pairs, or a full-rank DPO run, is the next step."

    def read_task(self, task):
        """An optional section whose metric can only be its own."""
        task.own_metric(PREFERENCE_ACCURACY.name)

    def read_data(self, data):
        data.no_general_mix("trains on preference pairs alone")

    def reference_scoring(self, metric, reward):
        return None  # a pair's answers are compared by the model's likelihood, not scored

    def sweep_problems(self, training, values):
        if True in values("packing"):
            return [("training.packing", f"stage {self.name} compares two answers to one prompt: nothing to pack (remove it)")]
        return []

    def rows_per_step(self, batch, hyperparameters):
        return float(batch)  # one pair a row, nothing mixed in

    def domain_metric(self, scoring):
        return PREFERENCE_ACCURACY

    def domain_probe(self, model, tokenizer, probes):
        return preference_probe(model, tokenizer, probes)

    def train(self, recipe, report, work_dir=None, resume_from=None):
        return train(recipe, report, work_dir, resume_from)

    def trainer_config(self, recipe, output_dir=Path("output")):
        return trainer_config(recipe, output_dir)


DPO = DPOStage()


def answer_logprobs(
    model: Any, tokenizer: Any, prompts: list[str], answers: list[str], system_prompt: str | None, max_len: int
) -> list[float]:
    """log p(answer | prompt) for each pair: the answer's tokens after the chat template's prompt, end of turn
    included, scored PROBE_BATCH sequences a forward pass (padded on the right, so no real token moves)."""
    import torch

    sequences = []
    for prompt, answer in zip(prompts, answers):
        messages = chat(prompt, system_prompt)
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": answer}], tokenize=False)
        start = len(tokenizer(head, add_special_tokens=False)["input_ids"])
        sequences.append((tokenizer(whole, add_special_tokens=False)["input_ids"][:max_len], start))
    scores = []
    for first in range(0, len(sequences), PROBE_BATCH):
        batch = sequences[first : first + PROBE_BATCH]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([ids + [tokenizer.pad_token_id or 0] * (width - len(ids)) for ids, _ in batch])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        with torch.no_grad():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits[:, :-1].float()
        targets = ids[:, 1:, None].to(model.device)
        logprobs = (logits.gather(2, targets)[..., 0] - torch.logsumexp(logits, dim=-1)).cpu()
        scores += [float(logprobs[row, max(start - 1, 0) : len(seq) - 1].sum()) for row, (seq, start) in enumerate(batch)]
    return scores


def preference_probe(model: Any, tokenizer: Any, probes: Any) -> tuple[dict[str, float], dict[str, list]]:
    """Preference accuracy on the held-out pairs (chosen more likely than rejected), with its Wilson interval,
    and the mean log-likelihood margin; each pair's 1/0 is its score for the paired test against the start."""
    from trainers import stats

    rows = probes.domain
    prompts = [row["prompt"] for row in rows] * 2
    answers = [row["chosen"] for row in rows] + [row["rejected"] for row in rows]
    logprobs = answer_logprobs(model, tokenizer, prompts, answers, probes.system_prompt, probes.max_seq_len)
    margins = [chosen - rejected for chosen, rejected in zip(logprobs[: len(rows)], logprobs[len(rows) :])]
    wins = [float(margin > 0) for margin in margins]
    metrics = {**stats.rate(wins).columns(PREFERENCE_ACCURACY.name), **stats.mean(margins).columns("preference_margin")}
    return metrics, {"scores": wins, "margins": margins}


def training_rows(recipe: Recipe) -> list[dict]:
    """The pairs in TRL's conversational preference form: a prompt, a chosen and a rejected assistant turn."""
    rows = duplicate(read_jsonl(recipe.data.domain_train), recipe.training.duplication)
    return [
        {
            "prompt": chat(row["prompt"], recipe.system_prompt),
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
        }
        for row in rows
    ]


def trainer_config(recipe: Recipe, output_dir: Path) -> DPOConfig:
    from trl import DPOConfig

    from trainers.rungs import common_args

    return DPOConfig(
        **common_args(recipe, output_dir),
        lr_scheduler_type="linear",
        beta=recipe.hyperparameters.beta,
        max_length=recipe.training.max_seq_len,
    )


def train(
    recipe: Recipe, report: Report, work_dir: Path | None = None, resume_from: Path | None = None
) -> dict[str, float]:
    """Train `recipe`, reporting every rung; returns the last rung's metrics.

    `resume_from` is a rung checkpoint of this recipe (as handed to `report`) to go on from.
    """
    import copy

    from datasets import Dataset
    from trl import DPOTrainer

    from trainers.rungs import adapter_config, train_stage

    def make_trainer(model, tokenizer, output_dir: Path, callbacks: list) -> DPOTrainer:
        peft = adapter_config(recipe)
        return DPOTrainer(
            model=model,
            ref_model=None if peft else copy.deepcopy(model).eval(),  # LoRA: the adapter off is the start
            args=trainer_config(recipe, output_dir),
            train_dataset=Dataset.from_list(training_rows(recipe)),
            processing_class=tokenizer,
            peft_config=peft,
            callbacks=callbacks,
        )

    return train_stage(
        recipe, report, make_trainer, DPO.domain_probe, work_dir=work_dir, resume_from=resume_from, window=DPO_WINDOW
    )


def main(argv: list[str] | None = None) -> int:
    return DPO.main(argv)


if __name__ == "__main__":
    sys.exit(main())
