"""Probe generation: batches formed by length give each prompt the answer it gets alone."""

from hpo.config.sweep_file import load_sweep
from trainers.data import read_jsonl
from trainers.models import load_base
from trainers.probes import generate_answers


def test_batched_answers_are_each_prompts_answer_alone_in_the_prompts_order(tiny):
    recipe = load_sweep(tiny / "sweep.yaml").recipe
    model, tokenizer = load_base(recipe.model)
    model.eval()
    rows = read_jsonl(tiny / "data" / "domain_test.jsonl")[:8] + read_jsonl(tiny / "data" / "instruction_probe.jsonl")[:4]
    prompts = [row["prompt"] for row in rows]  # short classification prompts, then longer instructions: padding varies
    alone = [generate_answers(model, tokenizer, [prompt], max_new_tokens=8)[0] for prompt in prompts]
    assert len(set(alone)) > 1  # the order of the answers is tested, not only their count
    assert generate_answers(model, tokenizer, prompts, max_new_tokens=8, batch_size=5) == alone
    assert generate_answers(model, tokenizer, prompts[::-1], max_new_tokens=8) == alone[::-1]
