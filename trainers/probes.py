"""Probes shared by the baseline, every rung and the final check.

- answers (stage sft's domain probe): greedy decoding after the chat template, each answer
  scored against its reference by the task's scorer (trainers.scorers); with labels, also
  the share of answers that are a label (the parse rate);
- domain perplexity on held-out domain text (stage cpt's);
- reward on held-out prompts (stage rft's): greedy answers scored by the sweep's reward,
  giving the mean reward, the positive-reward rate and the mean answer length in tokens;
- general perplexity on held-out text corpora (token-weighted): data.general_probe as
  `general_perplexity`, every corpus of `general.corpora` as `general_perplexity_<name>`;
- instruction response NLL (nats per completion token) on held-out instruction pairs.

Every figure comes with its sample size and 95% interval (`<name>_n`, `_low`, `_high`;
trainers.stats). Which domain probe runs is the recipe's stage's (`Stage.domain_probe`,
given to `load_probes`); the general probes always run. The predictions of a domain probe keep one score per example
(`scores`, higher is better), which the held-out check compares pairwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from trainers import stats
from trainers.data import chat, read_jsonl
from trainers.recipe import DEFAULT_CORPUS, Recipe, corpus_metric
from trainers.rewards import load_reward
from trainers.scorers import Scorer, make_scorer, parse_answer

GENERATION_BATCH = 16
# domain_probe(model, tokenizer, probes) -> (metrics, predictions): a stage's (trainers.stage.Stage.domain_probe)
DomainProbe = Callable[[Any, Any, "ProbeSet"], tuple[dict[str, float], dict[str, list]]]


@dataclass(frozen=True)
class ProbeSet:
    """Probe data loaded once per run and reused at every rung."""

    domain: list[dict[str, Any]]  # the stage's rows (its row_fields)
    corpora: dict[str, list[str]]  # general corpus name -> its passages; DEFAULT_CORPUS first
    instructions: list[dict[str, Any]]
    labels: tuple[str, ...]
    max_new_tokens: int
    max_seq_len: int
    probe: DomainProbe | None = field(default=None, compare=False)  # the recipe's stage's domain probe
    system_prompt: str | None = None  # the recipe's system turn, the same as in training
    scorer: Scorer | None = field(default=None, compare=False)  # the task's, for answers
    reward: Callable[..., list[float]] | None = field(default=None, compare=False)  # stage rft


def load_probes(recipe: Recipe, domain_probe: DomainProbe, domain_split: str = "eval") -> ProbeSet:
    """`domain_probe` is the recipe's stage's; `domain_split` is "eval" (what the search sees, capped at
    probes.domain_examples) or "test" (the final, held-out check, every row)."""
    domain_path = recipe.data.domain_eval if domain_split == "eval" else recipe.data.domain_test
    if domain_path is None:
        raise ValueError(f"no data.domain_{domain_split} file in the recipe (add one to score that split)")
    probes = recipe.probes
    instructions = read_jsonl(recipe.data.instruction_probe) if recipe.data.instruction_probe else []
    domain = read_jsonl(domain_path)
    corpora = {DEFAULT_CORPUS: texts(recipe.data.general_probe, probes.general_passages)}
    corpora.update({c.name: texts(c.path, c.passages) for c in recipe.general.corpora})
    return ProbeSet(
        domain=domain[: probes.domain_examples] if domain_split == "eval" else domain,
        corpora=corpora,
        instructions=instructions[: probes.instruction_examples],
        labels=recipe.labels,
        max_new_tokens=probes.max_new_tokens,
        max_seq_len=recipe.training.max_seq_len,
        probe=domain_probe,
        system_prompt=recipe.system_prompt,
        scorer=make_scorer(recipe.metric),
        reward=load_reward(recipe.reward) if recipe.reward is not None else None,
    )


def texts(path: str, limit: int) -> list[str]:
    return [row["text"] for row in read_jsonl(path)][:limit]


def chat_prompt(tokenizer: Any, prompt: str, system_prompt: str | None = None) -> str:
    return tokenizer.apply_chat_template(chat(prompt, system_prompt), tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    system_prompt: str | None = None,
    batch_size: int = GENERATION_BATCH,
) -> list[str]:
    """Greedy completions after the chat template, decoded without special tokens, in the prompts' order.

    Prompts go through `model.generate` (a cache of keys and values; a row that reached its end
    of sequence is padded until the batch ends) in batches of similar length, longest first,
    padded on the left: a batch in the prompts' own order is mostly padding where lengths vary.
    The tokenizer's own padding side is restored afterwards, so a trainer that shares it pads
    as it did before the probe.
    """
    texts = [chat_prompt(tokenizer, prompt, system_prompt) for prompt in prompts]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # stable: equal lengths keep their order
    answers = [""] * len(texts)
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            for row, answer in zip(rows, generate_batch(model, tokenizer, [texts[i] for i in rows], max_new_tokens)):
                answers[row] = answer
        return answers
    finally:
        tokenizer.padding_side = padding_side


def generate_batch(model: Any, tokenizer: Any, texts: Sequence[str], max_new_tokens: int) -> list[str]:
    """One batch of greedy completions of chat-formatted prompts, padded on the tokenizer's padding side."""
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    output = model.generate(
        **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


@torch.no_grad()
def _sum_nll(model: Any, input_ids: torch.Tensor, scored_from: int) -> tuple[float, int]:
    """Summed next-token NLL over positions >= `scored_from`, and how many were scored."""
    logits = model(input_ids=input_ids.to(model.device)).logits[0, :-1].float()
    targets = input_ids[0, 1:].to(model.device)
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")[max(scored_from - 1, 0) :]
    return float(nll.sum()), int(nll.numel())


def passage_nll(model: Any, tokenizer: Any, texts: Sequence[str], max_len: int) -> tuple[list[float], list[int]]:
    """Each passage's summed NLL and scored token count (passages under two tokens are skipped)."""
    sums, counts = [], []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_len)["input_ids"]
        if ids.shape[1] < 2:
            continue
        nll, n = _sum_nll(model, ids, 1)
        sums.append(nll)
        counts.append(n)
    return sums, counts


def perplexity(model: Any, tokenizer: Any, texts: Sequence[str], max_len: int) -> stats.Estimate:
    """Token-weighted perplexity over the passages, with a bootstrap interval over passages."""
    return stats.perplexity(*passage_nll(model, tokenizer, texts, max_len))


def response_nll(
    model: Any, tokenizer: Any, rows: Sequence[dict], max_len: int, system_prompt: str | None = None
) -> stats.Estimate:
    """Mean NLL per completion token given the chat-formatted prompt, with a bootstrap interval over pairs."""
    return stats.token_mean(*response_nlls(model, tokenizer, rows, max_len, system_prompt))


def response_nlls(
    model: Any, tokenizer: Any, rows: Sequence[dict], max_len: int, system_prompt: str | None = None
) -> tuple[list[float], list[int]]:
    """Each pair's summed completion NLL and its scored token count (pairs whose prompt fills max_len are skipped)."""
    sums, counts = [], []
    for row in rows:
        text = chat_prompt(tokenizer, row["prompt"], system_prompt)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        answer = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([(prompt + answer)[:max_len]])
        if len(prompt) >= ids.shape[1]:
            continue
        nll, n = _sum_nll(model, ids, len(prompt))
        sums.append(nll)
        counts.append(n)
    return sums, counts


def answers_probe(model: Any, tokenizer: Any, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list]]:
    """Greedy answers scored by the task's scorer (stage sft); with labels, the parse rate too."""
    prompts = [row["prompt"] for row in probes.domain]
    generated = generate_answers(model, tokenizer, prompts, probes.max_new_tokens, probes.system_prompt)
    return scored_answers(probes, generated)


def scored_answers(probes: ProbeSet, generated: Sequence[str]) -> tuple[dict[str, float], dict[str, list]]:
    """Answers to the domain rows (one each, however they were made) scored by the task's scorer; the parse rate."""
    rows = probes.domain
    prompts = [row["prompt"] for row in rows]
    expected = [row["completion"] for row in rows]
    scores = probes.scorer.score_all(prompts, generated, expected, rows)
    metrics = stats.score_estimate(scores).columns(f"domain_{probes.scorer.key}")
    if probes.labels:
        labels = set(probes.labels)
        parsed = [float(parse_answer(text) in labels) for text in generated]
        metrics.update(stats.rate(parsed).columns("domain_parse_rate"))
    return metrics, {"predictions": [parse_answer(t) for t in generated], "expected": expected, "scores": scores}


def perplexity_probe(model: Any, tokenizer: Any, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list]]:
    """Held-out domain perplexity (stage cpt); each passage's mean log-likelihood per token is its score."""
    sums, counts = passage_nll(model, tokenizer, [row["text"] for row in probes.domain], probes.max_seq_len)
    metrics = stats.perplexity(sums, counts).columns("domain_perplexity")
    return metrics, {"scores": [-s / n for s, n in zip(sums, counts)]}


def reward_probe(model: Any, tokenizer: Any, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list]]:
    """Greedy answers to held-out prompts scored by the reward, called as GRPO calls it (stage rft).

    Prompts and answers go in chat form, the row's `completion` as `reference`, and the
    row's other fields under their own names.
    """
    if probes.reward is None:
        raise ValueError("stage rft needs a reward to probe with (task.reward in the sweep file)")
    rows = probes.domain
    prompts = [row["prompt"] for row in rows]
    generated = generate_answers(model, tokenizer, prompts, probes.max_new_tokens, probes.system_prompt)
    columns = {key: [row.get(key) for row in rows] for key in rows[0] if key not in ("prompt", "completion")}
    rewards = [
        float(r)
        for r in probes.reward(
            prompts=[chat(prompt, probes.system_prompt) for prompt in prompts],
            completions=[[{"role": "assistant", "content": text}] for text in generated],
            reference=[row["completion"] for row in rows],
            **columns,
        )
    ]
    lengths = [float(len(tokenizer(text, add_special_tokens=False)["input_ids"])) for text in generated]
    metrics = {
        **stats.mean(rewards).columns("reward_mean"),
        **stats.rate([float(r > 0) for r in rewards]).columns("positive_reward_rate"),
        **stats.mean(lengths).columns("response_length"),
    }
    return metrics, {"predictions": generated, "expected": [row["completion"] for row in rows], "scores": rewards}


def domain_probe(model: Any, tokenizer: Any, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list]]:
    """The stage's domain metrics and its per-example scores (and answers, where it generates them)."""
    return probes.probe(model, tokenizer, probes)


def general_probes(model: Any, tokenizer: Any, probes: ProbeSet) -> dict[str, float]:
    """Perplexity on every general corpus and, with instruction pairs, their response NLL."""
    metrics: dict[str, float] = {}
    for name, passages in probes.corpora.items():
        metrics.update(perplexity(model, tokenizer, passages, probes.max_seq_len).columns(corpus_metric(name)))
    if probes.instructions:
        estimate = response_nll(model, tokenizer, probes.instructions, probes.max_seq_len, probes.system_prompt)
        metrics.update(estimate.columns("instruction_nll"))
    return metrics


def run_probes(model: Any, tokenizer: Any, probes: ProbeSet) -> tuple[dict[str, float], dict[str, list]]:
    """Every probe metric (flat floats) and the domain predictions (answers, references, per-example scores)."""
    was_training = model.training
    model.eval()
    try:
        metrics, predictions = domain_probe(model, tokenizer, probes)
        metrics.update(general_probes(model, tokenizer, probes))
    finally:
        model.train(was_training)
    return metrics, predictions
