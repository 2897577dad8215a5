"""A tiny model, tokenizer, dataset and sweep file, made in-process for smoke runs and tests.

    python -m hpo.tiny DIR      # then: hpo sweep DIR/sweep.yaml

The model is a 2-layer Llama with a byte-level BPE tokenizer trained on the data itself
and a ChatML chat template, so the whole product path runs in minutes on a laptop CPU
with nothing downloaded.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import yaml

LABELS = ("animal", "plant", "tool")
# The domain task uses WORDS; pretraining teaches the answer format on PRETRAIN_WORDS
# only, so the base model knows how to answer but not these words' labels.
WORDS = {
    "animal": ["cat", "dog", "horse", "eagle", "salmon", "tiger", "sheep", "otter", "crow", "whale"],
    "plant": ["oak", "rose", "fern", "maple", "tulip", "moss", "cactus", "ivy", "pine", "daisy"],
    "tool": ["hammer", "saw", "drill", "chisel", "wrench", "pliers", "spade", "axe", "file", "rake"],
}
PRETRAIN_WORDS = {
    "animal": ["mouse", "goat", "duck", "frog"],
    "plant": ["birch", "lily", "reed", "clover"],
    "tool": ["awl", "vise", "plane", "hoe"],
}
SUBJECTS = ["The farmer", "A child", "The teacher", "My neighbour", "The old man", "A traveller", "The baker"]
VERBS = ["walked to", "looked at", "painted", "talked about", "cleaned", "visited", "remembered"]
PLACES = ["the river", "the market", "the old mill", "the library", "the harbour", "the station", "the garden"]
TIMES = ["in the morning", "after the rain", "before dinner", "on a cold day", "at night", "last week"]
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>"]
PRETRAIN_STEPS = 400


def sentences(seed: int, count: int) -> list[str]:
    """Simple general-English sentences; different seeds give (mostly) different ones."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(PLACES)} {rng.choice(TIMES)}." for _ in range(count)
    ]


def domain_rows(seed: int, count: int, words: dict[str, list[str]] = WORDS) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(LABELS)
        word = rng.choice(words[label])
        prompt = f"Classify the word.\nWord: {word}\nOptions: {', '.join(LABELS)}\nAnswer with the label only."
        rows.append({"prompt": prompt, "completion": label})
    return rows


def general_rows(seed: int, count: int) -> list[dict[str, str]]:
    return [{"prompt": f"Repeat this sentence: {s}", "completion": s} for s in sentences(seed, count)]


def chat_text(prompt: str, completion: str) -> str:
    return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{completion}<|im_end|>\n"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def build_tokenizer(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<pad>", chat_template=CHATML_TEMPLATE
    )


def pretrain(model, tokenizer, texts: list[str], steps: int, seed: int) -> None:
    """A few hundred full-weight steps so the tiny model knows the chat format and general text.

    Without this the model is random and LoRA cannot move it within a smoke run; with it,
    the tiny model behaves like a small instruct model that has never seen the domain task.
    """
    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = tokenizer(rng.sample(texts, 8), return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def build_model(folder: Path, corpus: list[str], chats: list[str], seed: int = 0) -> Path:
    """Save a small pretrained 2-layer Llama and its tokenizer into `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(corpus)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    pretrain(model, tokenizer, chats, PRETRAIN_STEPS, seed)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sweep_document(trials: int = 6) -> dict:
    return {
        "name": "tiny",
        "model": "./model",
        "stage": "sft",
        "method": "lora",
        "data": {
            "domain_train": "data/domain_train.jsonl",
            "domain_eval": "data/domain_eval.jsonl",
            "domain_test": "data/domain_test.jsonl",
            "general_mix": "data/general_mix.jsonl",
            "general_probe": "data/general_probe.jsonl",
            "instruction_probe": "data/instruction_probe.jsonl",
        },
        "task": {"labels": list(LABELS), "metric": "exact_match"},
        "objective": {"general_weight": 1.0, "max_general_regression": 1.0},
        "search_space": "space.yaml",
        "budget": {"trials": trials, "concurrency": 2},
        "resources": {"cpu": 1},
        "scheduler": {"rung_interval": 4, "max_steps": 16, "reduction_factor": 2},
        "searcher": {"seed": 0, "startup_trials": 3},
        "training": {"batch_size": 8, "max_seq_len": 96},
        "probes": {"domain_examples": 12, "general_passages": 6, "instruction_examples": 6, "max_new_tokens": 8},
        "output_dir": "runs",
    }


# Wider than the published LoRA space: a randomly initialised 2-layer model needs far
# larger learning rates than a pretrained LLM to move within 8 steps.
TINY_SPACE = {
    "stage": "sft",
    "method": "lora",
    "parameters": {
        "learning_rate": {"type": "float", "low": 1.0e-4, "high": 0.5, "log": True, "default": 1.0e-3},
        "lora_rank": {"type": "choice", "values": [4, 8, 16], "default": 8},
        "lora_alpha": {"type": "choice", "values": [8, 16, 32], "default": 16},
        "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.3, "default": 0.15},
        "mixing_ratio": {"type": "float", "low": 0.3, "high": 1.0, "default": 0.5},
    },
}


def make_example(folder: Path, trials: int = 6) -> Path:
    """Write model/, data/, space.yaml and sweep.yaml into `folder`; returns the sweep file."""
    folder = Path(folder)
    data = folder / "data"
    domain = domain_rows(0, 160)
    general = general_rows(1, 60)
    write_jsonl(data / "domain_train.jsonl", domain[:120])
    write_jsonl(data / "domain_eval.jsonl", domain[120:140])
    write_jsonl(data / "domain_test.jsonl", domain[140:])
    write_jsonl(data / "general_mix.jsonl", general[:40])
    write_jsonl(data / "instruction_probe.jsonl", general[40:])
    write_jsonl(data / "general_probe.jsonl", [{"text": s} for s in sentences(3, 12)])
    pretraining = [chat_text(r["prompt"], r["completion"]) for r in general_rows(4, 300)]
    pretraining += [chat_text(r["prompt"], r["completion"]) for r in domain_rows(5, 150, PRETRAIN_WORDS)]
    pretraining += sentences(6, 300)
    corpus = pretraining + [r["prompt"] for r in domain]
    build_model(folder / "model", corpus, pretraining)
    (folder / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
    sweep = folder / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(sweep_document(trials), sort_keys=False))
    return sweep


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/tiny")
    print(make_example(target))
