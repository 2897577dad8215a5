"""Probes shared by the baseline, every rung and the final check.

- domain strict exact match on *generated* text: greedy decoding after the chat
  template; the parse rule is "strip surrounding whitespace, then the text must equal
  the label string exactly" (no case folding, no first-word heuristics).
- general perplexity on held-out text (token-weighted).
- instruction response NLL (nats per completion token) on held-out instruction pairs.
- domain perplexity on held-out domain text (stage cpt).
- reward on held-out prompts (stage rft): greedy answers scored by the sweep's reward,
  giving the mean reward, the positive-reward rate and the mean answer length in tokens.
- multiple-choice accuracy (an MMLU subset, base and best only): the question and its
  lettered choices in the chat template; the answer is the choice letter the model rates
  most likely as the first token of its reply (zero-shot, no generation).

Which domain probe runs follows the recipe's stage; the general probes always run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from trainers.data import CHOICE_LETTERS, chat, read_jsonl
from trainers.recipe import Recipe
from trainers.rewards import load_reward
from trainers.scorers import parse_answer
from trainers.stages import STAGES

GENERATION_BATCH = 16


@dataclass(frozen=True)
class ProbeSet:
    """Probe data loaded once per run and reused at every rung."""

    domain: list[dict[str, Any]]  # {"prompt", "completion"} rows (sft, rft) or {"text"} rows (cpt)
    general_texts: list[str]
    instructions: list[dict[str, Any]]
    labels: tuple[str, ...]
    max_new_tokens: int
    max_seq_len: int
    domain_probe: str = "exact_match"  # a key of DOMAIN_PROBES: the recipe's stage's probe
    system_prompt: str | None = None  # the recipe's system turn, the same as in training
    reward: Callable[..., list[float]] | None = field(default=None, compare=False)  # stage rft


def load_probes(recipe: Recipe, domain_split: str = "eval") -> ProbeSet:
    """`domain_split` is "eval" (what the search sees, capped at probes.domain_examples) or
    "test" (the final, held-out check, every row)."""
    domain_path = recipe.data.domain_eval if domain_split == "eval" else recipe.data.domain_test
    if domain_path is None:
        raise ValueError(f"no data.domain_{domain_split} file in the recipe (add one to score that split)")
    probes = recipe.probes
    instructions = read_jsonl(recipe.data.instruction_probe) if recipe.data.instruction_probe else []
    domain = read_jsonl(domain_path)
    reward = load_reward(recipe.reward) if recipe.reward is not None else None
    return ProbeSet(
        domain=domain[: probes.domain_examples] if domain_split == "eval" else domain,
        general_texts=[row["text"] for row in read_jsonl(recipe.data.general_probe)][: probes.general_passages],
        instructions=instructions[: probes.instruction_examples],
        labels=recipe.labels,
        max_new_tokens=probes.max_new_tokens,
        max_seq_len=recipe.training.max_seq_len,
        domain_probe=STAGES[recipe.stage].probe,
        system_prompt=recipe.system_prompt,
        reward=reward,
    )


def chat_prompt(tokenizer: Any, prompt: str, system_prompt: str | None = None) -> str:
    return tokenizer.apply_chat_template(chat(prompt, system_prompt), tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def generate_answers(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, system_prompt: str | None = None
) -> list[str]:
    """Greedy completions after the chat template, decoded without special tokens.

    Prompts are padded on the left for generation; the tokenizer's own padding side is
    restored afterwards, so a trainer that shares it pads as it did before the probe.
    """
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        answers: list[str] = []
        for start in range(0, len(prompts), GENERATION_BATCH):
            batch = prompts[start : start + GENERATION_BATCH]
            answers.extend(generate_batch(model, tokenizer, batch, max_new_tokens, system_prompt))
        return answers
    finally:
        tokenizer.padding_side = padding_side


def generate_batch(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, system_prompt: str | None
) -> list[str]:
    """One left-padded batch of greedy completions."""
    texts = [chat_prompt(tokenizer, p, system_prompt) for p in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    output = model.generate(
        **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def exact_match(model: Any, tokenizer: Any, rows: Sequence[dict], probes: ProbeSet) -> dict:
    """Strict exact match, the share of answers that parse to any label, and the predictions."""
    prompts = [row["prompt"] for row in rows]
    generated = generate_answers(model, tokenizer, prompts, probes.max_new_tokens, probes.system_prompt)
    predictions = [parse_answer(text) for text in generated]
    expected = [row["completion"] for row in rows]
    hits = sum(p == e for p, e in zip(predictions, expected))
    parsed = sum(p in set(probes.labels) for p in predictions)
    return {
        "exact_match": hits / len(rows),
        "parse_rate": parsed / len(rows),
        "predictions": predictions,
        "expected": expected,
    }


@torch.no_grad()
def _sum_nll(model: Any, input_ids: torch.Tensor, scored_from: int) -> tuple[float, int]:
    """Summed next-token NLL over positions >= `scored_from`, and how many were scored."""
    logits = model(input_ids=input_ids.to(model.device)).logits[0, :-1].float()
    targets = input_ids[0, 1:].to(model.device)
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")[max(scored_from - 1, 0) :]
    return float(nll.sum()), int(nll.numel())


def perplexity(model: Any, tokenizer: Any, texts: Sequence[str], max_len: int) -> float:
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_len)["input_ids"]
        if ids.shape[1] < 2:
            continue
        nll, n = _sum_nll(model, ids, 1)
        total, count = total + nll, count + n
    return math.exp(total / count) if count else math.nan


def response_nll(
    model: Any, tokenizer: Any, rows: Sequence[dict], max_len: int, system_prompt: str | None = None
) -> float:
    """Mean NLL per completion token given the chat-formatted prompt."""
    total, count = 0.0, 0
    for row in rows:
        text = chat_prompt(tokenizer, row["prompt"], system_prompt)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        answer = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([(prompt + answer)[:max_len]])
        if len(prompt) >= ids.shape[1]:
            continue
        nll, n = _sum_nll(model, ids, len(prompt))
        total, count = total + nll, count + n
    return total / count if count else math.nan


def reward_probe(model: Any, tokenizer: Any, rows: Sequence[dict], probes: ProbeSet) -> dict:
    """Greedy answers to held-out prompts scored by the reward, called as GRPO calls it.

    Prompts and answers go in chat form, the row's `completion` as `reference`, and the
    row's other fields under their own names.
    """
    prompts = [row["prompt"] for row in rows]
    generated = generate_answers(model, tokenizer, prompts, probes.max_new_tokens, probes.system_prompt)
    columns = {key: [row.get(key) for row in rows] for key in rows[0] if key not in ("prompt", "completion")}
    rewards = probes.reward(
        prompts=[chat(prompt, probes.system_prompt) for prompt in prompts],
        completions=[[{"role": "assistant", "content": text}] for text in generated],
        reference=[row["completion"] for row in rows],
        **columns,
    )
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in generated]
    return {
        "reward_mean": sum(rewards) / len(rewards),
        "positive_reward_rate": sum(r > 0 for r in rewards) / len(rewards),
        "response_length": sum(lengths) / len(lengths),
        "predictions": generated,
        "expected": [row["completion"] for row in rows],
        "rewards": [float(r) for r in rewards],
    }


def choice_question(row: dict[str, Any]) -> str:
    lines = [row["question"], *(f"{CHOICE_LETTERS[i]}. {text}" for i, text in enumerate(row["choices"]))]
    return "\n".join([*lines, "Answer with the letter only."])


@torch.no_grad()
def choice_accuracy(model: Any, tokenizer: Any, rows: Sequence[dict], system_prompt: str | None = None) -> float:
    """Share of questions whose answer letter is the likeliest first token among the choice letters."""
    hits = 0
    for row in rows:
        prompt = chat_prompt(tokenizer, choice_question(row), system_prompt)
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
        logits = model(input_ids=ids).logits[0, -1]
        letters = [
            tokenizer(CHOICE_LETTERS[i], add_special_tokens=False)["input_ids"][0] for i in range(len(row["choices"]))
        ]
        hits += int(int(torch.argmax(logits[letters])) == row["answer"])
    return hits / len(rows) if rows else math.nan


def perplexity_probe(model: Any, tokenizer: Any, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list]]:
    """Held-out domain perplexity (stage cpt)."""
    texts = [row["text"] for row in probes.domain]
    return {"domain_perplexity": perplexity(model, tokenizer, texts, probes.max_seq_len)}, {}


def reward_rate_probe(model: Any, tokenizer: Any, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list]]:
    """Mean reward, positive-reward rate and answer length of greedy answers (stage rft)."""
    if probes.reward is None:
        raise ValueError("stage rft needs a reward to probe with (task.reward in the sweep file)")
    scored = reward_probe(model, tokenizer, probes.domain, probes)
    metrics = {k: scored[k] for k in ("reward_mean", "positive_reward_rate", "response_length")}
    return metrics, {k: scored[k] for k in ("predictions", "expected", "rewards")}


def exact_match_probe(model: Any, tokenizer: Any, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list]]:
    """Strict exact match and parse rate of greedy answers against the labels (stage sft)."""
    domain = exact_match(model, tokenizer, probes.domain, probes)
    metrics = {"domain_exact_match": domain["exact_match"], "domain_parse_rate": domain["parse_rate"]}
    return metrics, {"predictions": domain["predictions"], "expected": domain["expected"]}


DomainProbe = Callable[[Any, Any, ProbeSet], tuple[dict[str, float], dict[str, list]]]
DOMAIN_PROBES: dict[str, DomainProbe] = {
    "exact_match": exact_match_probe,
    "perplexity": perplexity_probe,
    "reward": reward_rate_probe,
}


def domain_probe(model: Any, tokenizer: Any, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list]]:
    """The stage's domain metrics and, for answer-generating stages, the answers themselves."""
    return DOMAIN_PROBES[probes.domain_probe](model, tokenizer, probes)


def run_probes(model: Any, tokenizer: Any, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list]]:
    """Every probe metric (flat floats) and the domain predictions (for a confusion matrix)."""
    was_training = model.training
    model.eval()
    try:
        metrics, predictions = domain_probe(model, tokenizer, probes)
        metrics["general_perplexity"] = perplexity(model, tokenizer, probes.general_texts, probes.max_seq_len)
        if probes.instructions:
            metrics["instruction_nll"] = response_nll(
                model, tokenizer, probes.instructions, probes.max_seq_len, probes.system_prompt
            )
    finally:
        model.train(was_training)
    return metrics, predictions
