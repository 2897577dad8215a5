"""The Ray-free trainers on a GPU: tokens/s per GPU, model FLOPs utilization, peak memory, probe time per rung.

    python benchmarks/gpu_trainer.py                  # ~1.1B Llama, LoRA and full rank, bf16: a few minutes on one H100
    python benchmarks/gpu_trainer.py --tiny           # a 2-layer model on CPU: the same path in seconds (a test runs it)
    torchrun --nproc-per-node 8 benchmarks/gpu_trainer.py --methods full   # DDP/FSDP over the node's GPUs

It builds a randomly initialised Llama-architecture model from a config (TinyLlama's shape:
hidden 2048, 22 layers, 32 heads, 4 key-value heads, vocabulary 32000; about 1.1B
parameters), a byte-level tokenizer trained on synthetic text, and SFT rows, all in a
temporary folder: nothing is downloaded. Then, per method, the SFT trainer (trainers.sft:
TRL's SFTTrainer through the rung loop, probes at every rung) trains `--steps` steps with
packed `--seq-len` sequences, and the rung metrics give:

- tokens/s per GPU: non-padding tokens trained (all processes) per training second, over the
  rungs after the first (the first pays for warm-up), divided by the number of processes;
- MFU: model FLOPs per second per GPU over the GPU's peak dense bf16 FLOP/s (`--peak-tflops`;
  989 for an H100 or H200 SXM). Model FLOPs per token = 6N + 12·L·d·s for full rank and
  4N + 12·L·d·s for LoRA (the frozen weights get no weight gradient), N the weights of every
  matrix multiply (each Linear, the LM head included; the embedding lookup is no multiply),
  L layers, d hidden size, s sequence length (PaLM's definition; activation recomputation is
  not counted);
- peak memory: the most the process allocated on its GPU (torch.cuda.max_memory_allocated);
- probe time per rung: the mean seconds the rung's probes took.

It needs torch, transformers, peft, accelerate, trl and datasets (and what they and the
probes pull in: numpy, scipy, pyyaml), neither Ray nor a network.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import torch  # noqa: E402

from trainers.distributed import barrier, is_main, join, world_size  # noqa: E402
from trainers.recipe import DataPaths, MixedHyperparameters, Probes, Recipe, Training  # noqa: E402

# GPUs' dense bf16 peak, TFLOP/s (vendor figures, no sparsity), by a part of the device name.
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 70.0}
LEARNING_RATES = {"lora": 1e-4, "full": 1e-5}


@dataclass(frozen=True)
class Size:
    """The model and run shape of one benchmark size."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    seq_len: int
    batch: int
    steps: int
    rung_interval: int
    probe_examples: int
    new_tokens: int


LARGE = Size(2048, 5632, 22, 32, 4, 32000, 1024, 16, 30, 10, 32, 16)  # TinyLlama's shape, ~1.1B
TINY = Size(64, 128, 2, 4, 2, 512, 64, 4, 6, 2, 4, 4)


def build_model(folder: Path, size: Size, seed: int = 0) -> Path:
    """A randomly initialised Llama of `size`, saved in bf16 with a tokenizer trained on synthetic text."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hpo.tiny import build_tokenizer, sentences

    tokenizer = build_tokenizer(sentences(seed, 400))
    config = LlamaConfig(
        vocab_size=size.vocab,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=max(2048, size.seq_len),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@contextmanager
def work_folder() -> Iterator[Path]:
    """A temporary folder; under torchrun one per run, shared by its ranks (one node)."""
    if world_size() == 1:
        with tempfile.TemporaryDirectory(prefix="gpu-trainer-") as scratch:
            yield Path(scratch)
        return
    join()
    folder = Path(tempfile.gettempdir()) / f"gpu-trainer-{os.environ['MASTER_PORT']}"
    folder.mkdir(exist_ok=True)
    yield folder
    barrier()
    if is_main():
        shutil.rmtree(folder, ignore_errors=True)


def write_data(folder: Path, seed: int = 0) -> None:
    """Synthetic SFT rows (word classification and sentence repetition) and probe text."""
    from hpo.tiny import domain_rows, general_rows, sentences, write_jsonl

    domain = domain_rows(seed, 600)
    write_jsonl(folder / "train.jsonl", domain[:500])
    write_jsonl(folder / "eval.jsonl", domain[500:])
    write_jsonl(folder / "mix.jsonl", general_rows(seed + 1, 400))
    write_jsonl(folder / "probe.jsonl", [{"text": s} for s in sentences(seed + 2, 32)])


def data_paths(folder: Path) -> DataPaths:
    return DataPaths(
        domain_train=str(folder / "train.jsonl"),
        domain_eval=str(folder / "eval.jsonl"),
        general_mix=str(folder / "mix.jsonl"),
        general_probe=str(folder / "probe.jsonl"),
    )


def recipe_for(method: str, model: Path, data: DataPaths, size: Size) -> Recipe:
    training = Training(
        batch_size=size.batch,
        max_seq_len=size.seq_len,
        max_steps=size.steps,
        rung_interval=size.rung_interval,
        packing=True,  # full sequences: tokens/s and MFU measure the model, not the padding
        threads=max(1, (os.cpu_count() or 2) // 2),
    )
    return Recipe(
        stage="sft",
        method=method,
        model=str(model),
        data=data,
        labels=("animal", "plant", "tool"),
        hyperparameters=MixedHyperparameters(learning_rate=LEARNING_RATES[method], lora_rank=16, lora_alpha=32),
        training=training,
        probes=Probes(domain_examples=size.probe_examples, general_passages=16, max_new_tokens=size.new_tokens),
    )


def matmul_weights(model: Any) -> int:
    """N: the weights of every Linear (LM head included)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def flops_per_token(weights: int, size: Size, method: str) -> float:
    """6N + 12·L·d·s for full rank; LoRA computes no weight gradient for the frozen base: 4N + 12·L·d·s."""
    per_weight = 6 if method == "full" else 4
    return per_weight * weights + 12 * size.layers * size.hidden * size.seq_len


def throughput(rungs: list[dict]) -> float:
    """Tokens per training second over the rungs after the first (all processes together)."""
    first, last = rungs[0], rungs[-1]
    if len(rungs) == 1:
        return last["tokens_seen"] / max(last["train_seconds"], 1e-9)
    return (last["tokens_seen"] - first["tokens_seen"]) / max(last["train_seconds"] - first["train_seconds"], 1e-9)


def probe_seconds_per_rung(rungs: list[dict]) -> float:
    return rungs[-1]["probe_seconds"] / len(rungs)


def peak_tflops(given: float | None) -> float | None:
    """The GPU's dense bf16 peak: as given, else from its name; None off a GPU or for an unknown one."""
    if given is not None:
        return given
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for part, peak in PEAK_TFLOPS.items() if part in name), None)


def run_method(method: str, model: Path, data: DataPaths, size: Size, work: Path, peak: float | None) -> dict:
    from transformers import AutoConfig

    from trainers.sft import train

    rungs: list[dict] = []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    train(recipe_for(method, model, data, size), lambda step, metrics, checkpoint: rungs.append(metrics), work)
    wall = time.perf_counter() - started
    config = AutoConfig.from_pretrained(model)
    weights = count_weights(config)
    per_gpu = throughput(rungs) / world_size()
    flops = flops_per_token(weights, size, method) * per_gpu
    result = {
        "method": method,
        "parameters": weights,
        "steps": rungs[-1]["step"],
        "tokens_per_s_per_gpu": per_gpu,
        "model_tflops_per_gpu": flops / 1e12,
        "mfu": flops / (peak * 1e12) if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "probe_s_per_rung": probe_seconds_per_rung(rungs),
        "train_s": rungs[-1]["train_seconds"],
        "wall_s": wall,
    }
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def count_weights(config: Any) -> int:
    """N from the config, on the meta device (nothing allocated)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return matmul_weights(AutoModelForCausalLM.from_config(config))


def table(results: list[dict], peak: float | None) -> str:
    lines = [
        f"| method | params (N) | tokens/s/GPU | model TFLOP/s/GPU | MFU (peak {peak or 'n/a'} TFLOP/s) "
        "| peak memory GiB | probe s/rung | train s | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        memory = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "n/a (CPU)"
        lines.append(
            f"| {r['method']} | {r['parameters'] / 1e6:,.1f}M | {r['tokens_per_s_per_gpu']:,.0f} "
            f"| {r['model_tflops_per_gpu']:.1f} | {mfu} | {memory} | {r['probe_s_per_rung']:.2f} "
            f"| {r['train_s']:.1f} | {r['wall_s']:.1f} |"
        )
    return "\n".join(lines)


def device_line() -> str:
    if not torch.cuda.is_available():
        return f"device: CPU ({os.cpu_count()} cores), torch {torch.__version__}"
    return f"device: {world_size()} x {torch.cuda.get_device_name()}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model, a few steps: CPU in seconds")
    parser.add_argument("--methods", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    parser.add_argument("--steps", type=int, default=None, help="training steps per method (3 rungs)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    size = TINY if args.tiny else LARGE
    if args.steps:
        size = Size(**{**size.__dict__, "steps": args.steps, "rung_interval": max(1, args.steps // 3)})
    peak = peak_tflops(args.peak_tflops)
    with work_folder() as work:
        if is_main():
            build_model(work / "model", size)
            write_data(work)
        barrier()  # under torchrun the other ranks read what rank 0 wrote
        data = data_paths(work)
        results = [run_method(method, work / "model", data, size, work, peak) for method in args.methods]
    if is_main():
        print(device_line())
        print(table(results, peak))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(
                json.dumps({"device": device_line(), "size": size.__dict__, "results": results}, indent=2)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
