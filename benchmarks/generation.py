"""How fast the probes generate answers: the probes' path against batches in the prompts' own order.

    python -m benchmarks.generation [--sweep demo/supersense3.yaml] [--split eval] [--repeats 3]

Loads the sweep's base model and its domain prompts (`--split eval`: the rung probes'
`probes.domain_examples` rows; `test`: every held-out row) and generates greedy answers as
the probes do (`trainers.probes.generate_answers`: batches of similar length, longest
first) and as they did before (`in_order`: batches of `--batch` prompts in the file's
order), and the probes' path at other batch sizes (`--batch-sizes`). Runs are interleaved,
A B B A ..., so a drift in the machine's speed weighs on every variant alike; each variant
runs `--repeats` times on `--threads` threads (1: what a trial's probe gets).

Per variant it reports, from the median run: seconds, generated tokens/s (answer tokens up
to and including each row's end of sequence), prompt tokens/s, and the work counted by a
hook on the model's forward: positions computed (padding included) in the first pass of
each batch (the prompts) and in the passes after it (one new token per row still in the
batch), and how many answers differ from `in_order`'s. Writes results.json and results.md
under `--out` (default benchmarks/results/generation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from hpo.config.sweep_file import load_sweep
from trainers.models import load_base
from trainers.probes import GENERATION_BATCH, chat_prompt, generate_answers, generate_batch, load_probes
from trainers.stages import STAGES

Generate = Callable[[Any, Any, Sequence[str], int, str | None], list[str]]


def in_order(batch_size: int) -> Generate:
    """The probes' path before batches were formed by length: `batch_size` prompts at a time, in order."""

    def generate(model, tokenizer, prompts, max_new_tokens, system_prompt):
        texts = [chat_prompt(tokenizer, prompt, system_prompt) for prompt in prompts]
        padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
        try:
            answers: list[str] = []
            for start in range(0, len(texts), batch_size):
                answers += generate_batch(model, tokenizer, texts[start : start + batch_size], max_new_tokens)
            return answers
        finally:
            tokenizer.padding_side = padding_side

    return generate


def by_length(batch_size: int) -> Generate:
    def generate(model, tokenizer, prompts, max_new_tokens, system_prompt):
        return generate_answers(model, tokenizer, prompts, max_new_tokens, system_prompt, batch_size=batch_size)

    return generate


class ForwardCounter:
    """Counts positions the model computes: in each batch's first pass (the prompts) and in the passes after."""

    def __init__(self, model: Any) -> None:
        self.prompt_positions = self.decode_positions = self.passes = 0
        self.handle = model.get_decoder().register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs) -> None:
        embeds = kwargs.get("inputs_embeds")
        shape = embeds.shape[:2] if embeds is not None else kwargs["input_ids"].shape
        self.passes += 1
        if shape[1] > 1:
            self.prompt_positions += shape[0] * shape[1]
        else:
            self.decode_positions += shape[0]

    def reset(self) -> dict[str, int]:
        counted = {"prompt_positions": self.prompt_positions, "decode_positions": self.decode_positions}
        counted["passes"] = self.passes
        self.prompt_positions = self.decode_positions = self.passes = 0
        return counted


def answer_tokens(tokenizer: Any, answers: Sequence[str]) -> int:
    """Generated tokens: each answer's own tokens and its end of sequence."""
    return sum(len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1 for answer in answers)


def measure(variants: dict[str, Generate], model, tokenizer, prompts, probes, repeats: int) -> dict[str, list[dict]]:
    """Every variant `repeats` times, interleaved A B ... B A, with its timing, work counts and answers."""
    counter = ForwardCounter(model)
    names = list(variants)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    try:
        for repeat in range(repeats):
            for name in names if repeat % 2 == 0 else reversed(names):
                started = time.perf_counter()
                answers = variants[name](model, tokenizer, prompts, probes.max_new_tokens, probes.system_prompt)
                seconds = time.perf_counter() - started
                runs[name].append({"seconds": seconds, "answers": answers, **counter.reset()})
    finally:
        counter.handle.remove()
    return runs


def summarize(runs: dict[str, list[dict]], tokenizer, prompt_tokens: int, reference: str) -> list[dict[str, Any]]:
    expected = runs[reference][0]["answers"]
    rows = []
    for name, variant_runs in runs.items():
        seconds = statistics.median(run["seconds"] for run in variant_runs)
        answers = variant_runs[0]["answers"]
        generated = answer_tokens(tokenizer, answers)
        rows.append(
            {
                "variant": name,
                "seconds": seconds,
                "all_seconds": [run["seconds"] for run in variant_runs],
                "generated_tokens_per_s": generated / seconds,
                "prompt_tokens_per_s": prompt_tokens / seconds,
                "prompt_positions": variant_runs[0]["prompt_positions"],
                "decode_positions": variant_runs[0]["decode_positions"],
                "passes": variant_runs[0]["passes"],
                "answers_differing": sum(a != b for a, b in zip(answers, expected)),
                "speedup": 0.0,
            }
        )
    reference_seconds = next(row["seconds"] for row in rows if row["variant"] == reference)
    for row in rows:
        row["speedup"] = reference_seconds / row["seconds"]
    return rows


def markdown(rows: list[dict[str, Any]], setting: str) -> str:
    lines = [
        f"{setting}",
        "",
        "| variant | s (median) | generated tokens/s | prompt tokens/s | prompt positions | decode positions "
        "| speed-up | answers differing |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['seconds']:.2f} | {r['generated_tokens_per_s']:.1f} | "
            f"{r['prompt_tokens_per_s']:.0f} | {r['prompt_positions']} | {r['decode_positions']} | "
            f"{r['speedup']:.2f} | {r['answers_differing']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generation", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=Path("demo/supersense3.yaml"))
    parser.add_argument("--split", choices=("eval", "test"), default="eval")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the sweep's probes.max_new_tokens")
    parser.add_argument("--batch", type=int, default=GENERATION_BATCH, help="the batch size of both paths")
    parser.add_argument("--batch-sizes", default="", help="more batch sizes for the probes' path, e.g. 8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/generation"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    recipe = load_sweep(args.sweep).recipe
    probes = load_probes(recipe, STAGES[recipe.stage].domain_probe, domain_split=args.split)
    if args.max_new_tokens is not None:
        probes = type(probes)(**{**vars(probes), "max_new_tokens": args.max_new_tokens})
    model, tokenizer = load_base(recipe.model, recipe.start_adapters)
    model.eval()
    prompts = [row["prompt"] for row in probes.domain]
    reference = f"in order, {args.batch} a batch"
    variants = {reference: in_order(args.batch), f"by length, {args.batch} a batch": by_length(args.batch)}
    for size in (int(s) for s in args.batch_sizes.split(",") if s):
        variants[f"by length, {size} a batch"] = by_length(size)
    prompt_tokens = sum(
        len(tokenizer(chat_prompt(tokenizer, p, probes.system_prompt), add_special_tokens=False)["input_ids"])
        for p in prompts
    )
    runs = measure(variants, model, tokenizer, prompts, probes, args.repeats)
    rows = summarize(runs, tokenizer, prompt_tokens, reference)
    setting = (
        f"{recipe.model}, {args.sweep} {args.split} split: {len(prompts)} prompts ({prompt_tokens} tokens), "
        f"up to {probes.max_new_tokens} new tokens, {args.threads} thread(s), {args.repeats} runs each, interleaved"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"setting": setting, "rows": rows}, indent=1))
    table = markdown(rows, setting)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
