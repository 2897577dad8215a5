"""A tiny model, tokenizer, dataset and sweep file, made in-process for smoke runs and tests.

    python -m hpo.tiny DIR      # then: hpo sweep DIR/sweep.yaml

Next to the SFT sweep it writes one sweep file per stage (sweep_cpt.yaml,
sweep_sft_full.yaml, sweep_rft.yaml) and a pipeline (pipeline.yaml: SFT, then RFT
from the best SFT adapter), each with a small space of its own.

The model is a 2-layer Llama with a byte-level BPE tokenizer trained on the data itself
and a ChatML chat template, so the whole product path runs in minutes on a laptop CPU
with nothing downloaded.
"""

from __future__ import annotations

import itertools
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
    """Word-classification rows, the options listed in any order. While there are enough, no two rows
    are alike, so splits cut from one call share none (the split check's rule); the words recur."""
    rng = random.Random(seed)
    orders = list(itertools.permutations(LABELS))
    distinct = [(label, word, order) for label in LABELS for word in words[label] for order in orders]
    if count <= len(distinct):
        picked = rng.sample(distinct, count)
    else:
        picked = [rng.choice(distinct) for _ in range(count)]
    rows = []
    for label, word, order in picked:
        prompt = f"Classify the word.\nWord: {word}\nOptions: {', '.join(order)}\nAnswer with the label only."
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
        "general": {"benchmarks": [{"task": "tiny_choice", "include": "lm_eval_tasks/tiny_choice.yaml"}]},
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


# An lm-evaluation-harness task over the multiple-choice rows, as MMLU's is defined (data path relative to it).
CHOICE_TASK = {
    "task": "tiny_choice",
    "dataset_path": "json",
    "dataset_kwargs": {"data_files": {"test": "../data/choice_probe.jsonl"}},
    "test_split": "test",
    "output_type": "multiple_choice",
    "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nAnswer:",
    "doc_to_choice": ["A", "B", "C"],
    "doc_to_target": "answer",
    "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
}


def domain_passages(seed: int, count: int) -> list[dict[str, str]]:
    """Raw domain text for continued pre-training: what each domain word is, no two passages alike."""
    rng = random.Random(seed)
    shapes = ["A {w} is a kind of {l}.", "The {w} is an {l} word.", "Everyone knows the {w} is a {l}."]
    seen = [(shape, label, word, place) for shape in shapes for label in LABELS for word in WORDS[label] for place in PLACES]
    return [
        {"text": f"At {place}: " + shape.format(w=word, l=label)} for shape, label, word, place in rng.sample(seen, count)
    ]


# Stage spaces for the tiny model: wide learning-rate ranges, small adapters (see TINY_SPACE).
TINY_STAGE_SPACES = {
    "cpt": {
        "stage": "cpt",
        "method": "lora",
        "parameters": {
            "learning_rate": {"type": "float", "low": 1.0e-4, "high": 0.1, "log": True, "default": 3.0e-3},
            "lora_rank": {"type": "choice", "values": [4, 8], "default": 8},
            "lora_alpha": {"type": "choice", "values": [8, 16], "default": 16},
            "mixing_ratio": {"type": "float", "low": 0.5, "high": 1.0, "default": 0.7},
        },
    },
    "cpt_full": {
        "stage": "cpt",
        "method": "full",
        "parameters": {
            "learning_rate": {"type": "float", "low": 1.0e-4, "high": 0.01, "log": True, "default": 1.0e-3},
            "mixing_ratio": {"type": "float", "low": 0.5, "high": 1.0, "default": 0.7},
        },
    },
    "sft_full": {
        "stage": "sft",
        "method": "full",
        "parameters": {
            "learning_rate": {"type": "float", "low": 1.0e-4, "high": 0.05, "log": True, "default": 1.0e-3},
            "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.3, "default": 0.1},
            "mixing_ratio": {"type": "float", "low": 0.5, "high": 1.0, "default": 0.7},
        },
    },
    "rft": {
        "stage": "rft",
        "method": "lora",
        "parameters": {
            "learning_rate": {"type": "float", "low": 1.0e-4, "high": 0.05, "log": True, "default": 3.0e-3},
            "beta": {"type": "float", "low": 0.01, "high": 0.5, "log": True, "default": 0.04},
            "num_generations": {"type": "choice", "values": [2, 4], "default": 4},
            "lora_rank": {"type": "choice", "values": [4, 8], "default": 8},
            "lora_alpha": {"type": "choice", "values": [8, 16], "default": 16},
        },
    },
}


def stage_documents(trials: int = 2) -> dict[str, dict]:
    """The tiny sweep files of every stage, and a pipeline: full-rank CPT, then LoRA SFT, then RFT."""
    base = {key: value for key, value in sweep_document(trials).items() if key != "general"}  # benchmarks: sweep.yaml only
    base["budget"] = {"trials": trials, "concurrency": 2}
    base["scheduler"] = {"rung_interval": 4, "max_steps": 8, "reduction_factor": 2}
    cpt = {
        **base,
        "name": "tiny-cpt",
        "stage": "cpt",
        "data": {
            "domain_train": "data/cpt_train.jsonl",
            "domain_eval": "data/cpt_eval.jsonl",
            "general_mix": "data/general_text.jsonl",
            "general_probe": "data/general_probe.jsonl",
        },
        "search_space": "space_cpt.yaml",
    }
    del cpt["task"]
    rft_task = {"reward": {"callable": "trainers.rewards:exact_match"}}
    rft_data = {k: v for k, v in base["data"].items() if k != "general_mix"}
    rft = {
        **base,
        "name": "tiny-rft",
        "stage": "rft",
        "task": rft_task,
        "data": rft_data,
        "search_space": "space_rft.yaml",
        "objective": {**base["objective"], "max_kl": 2.0},  # the tiny model moves fast at its learning rates
    }
    full = {**base, "name": "tiny-sft-full", "method": "full", "search_space": "space_sft_full.yaml"}
    pipeline = {key: value for key, value in base.items() if key not in ("stage", "method", "search_space")}
    pipeline["task"] = {"labels": list(LABELS)}  # each stage's own metric (exact match, then reward)
    pipeline.update(
        name="tiny-chain",
        stages=["cpt", "sft", "rft"],
        cpt={
            "method": "full",
            "search_space": "space_cpt_full.yaml",
            "data": {**cpt["data"], "domain_test": None},
            "task": None,
        },
        sft={"search_space": "space.yaml"},
        rft={
            "search_space": "space_rft.yaml",
            "data": {"general_mix": None},
            "task": rft_task,
            "objective": {"max_kl": 2.0},
        },
    )
    return {"sweep_cpt": cpt, "sweep_rft": rft, "sweep_sft_full": full, "pipeline": pipeline}


def make_stage_examples(folder: Path, trials: int = 2) -> None:
    """CPT data, the stage spaces and the stage sweep files, next to make_example's files."""
    passages = domain_passages(7, 140)  # one draw, cut in two: the splits share no passage
    write_jsonl(folder / "data" / "cpt_train.jsonl", passages[:120])
    write_jsonl(folder / "data" / "cpt_eval.jsonl", passages[120:])
    write_jsonl(folder / "data" / "general_text.jsonl", [{"text": s} for s in sentences(9, 40)])
    for name, space in TINY_STAGE_SPACES.items():
        (folder / f"space_{name}.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    for name, document in stage_documents(trials).items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


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
    choices = [
        {"question": r["prompt"], "choices": list(LABELS), "answer": LABELS.index(r["completion"])} for r in domain
    ]
    write_jsonl(data / "choice_probe.jsonl", choices[140:])  # the test rows as a multiple-choice benchmark
    tasks = folder / "lm_eval_tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "tiny_choice.yaml").write_text(yaml.safe_dump(CHOICE_TASK, sort_keys=False))
    pretraining = [chat_text(r["prompt"], r["completion"]) for r in general_rows(4, 300)]
    pretraining += [chat_text(r["prompt"], r["completion"]) for r in domain_rows(5, 150, PRETRAIN_WORDS)]
    pretraining += sentences(6, 300)
    corpus = pretraining + [r["prompt"] for r in domain]
    build_model(folder / "model", corpus, pretraining)
    (folder / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
    sweep = folder / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(sweep_document(trials), sort_keys=False))
    make_stage_examples(folder)
    return sweep


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/tiny")
    print(make_example(target))
