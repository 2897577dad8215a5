"""Which lm-evaluation-harness batch size scores a sweep's benchmark fastest on this machine.

    python -m benchmarks.harness_batch [--sweep demo/supersense3.yaml] [--sizes 1,4,8,16,32] [--limit 60] [--repeats 2]

Scores the base model on the sweep's first benchmark (`general.benchmarks`, the first
`--limit` examples) through `trainers.harness.run_benchmark`, once per batch size and
`--repeats` times, interleaved A B ... B A so a drift in the machine's speed weighs on every
size alike, on `--threads` threads (default: every core, as the held-out check runs). Reports
the median seconds per size, examples per second, and whether each size's per-example
scores equal the first size's (padding can move a near tie). Writes results.json and
results.md under `--out` (default benchmarks/results/harness_batch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import torch

from hpo.config.sweep_file import load_sweep
from trainers import harness
from trainers.models import load_base


def score(model, tokenizer, benchmark, system_prompt: str | None, batch_size: int) -> tuple[float, list[float]]:
    """Seconds and per-example scores of one run at `batch_size`."""
    started = time.perf_counter()
    scores = harness.run_benchmark(model, tokenizer, benchmark, system_prompt, batch_size=batch_size)["scores"]
    return time.perf_counter() - started, scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness_batch", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=Path("demo/supersense3.yaml"))
    parser.add_argument("--sizes", default="1,4,8,16,32")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/harness_batch"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    recipe = load_sweep(args.sweep).recipe
    if not recipe.general.benchmarks:
        parser.error(f"{args.sweep} names no general.benchmarks")
    benchmark = dataclasses.replace(recipe.general.benchmarks[0], limit=args.limit)
    model, tokenizer = load_base(recipe.model, recipe.start_adapters)
    model.eval()
    sizes = [int(size) for size in args.sizes.split(",")]
    runs: dict[int, list[tuple[float, list[float]]]] = {size: [] for size in sizes}
    for repeat in range(args.repeats):
        for size in sizes if repeat % 2 == 0 else reversed(sizes):
            runs[size].append(score(model, tokenizer, benchmark, recipe.system_prompt, size))
    reference = runs[sizes[0]][0][1]
    rows = []
    for size in sizes:
        seconds = statistics.median(run[0] for run in runs[size])
        rows.append(
            {
                "batch_size": size,
                "seconds": seconds,
                "all_seconds": [run[0] for run in runs[size]],
                "examples_per_s": len(reference) / seconds,
                "accuracy": statistics.mean(runs[size][0][1]),
                "scores_equal_first": runs[size][0][1] == reference,
            }
        )
    setting = (
        f"{recipe.model}, {benchmark.task} ({len(reference)} examples), {args.threads} thread(s), "
        f"{args.repeats} runs per size, interleaved"
    )
    lines = [setting, "", "| batch size | s (median) | examples/s | accuracy | scores equal size " + f"{sizes[0]}'s |"]
    lines.append("|---|---|---|---|---|")
    lines += [
        f"| {r['batch_size']} | {r['seconds']:.1f} | {r['examples_per_s']:.2f} | {r['accuracy']:.3f} | "
        f"{r['scores_equal_first']} |"
        for r in rows
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"setting": setting, "rows": rows}, indent=1))
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
