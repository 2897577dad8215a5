"""How many passages the in-loop general perplexity probe needs to estimate the general regression.

    python -m benchmarks.probe_size --run runs/supersense3-... [--corpus ../shared/data/wikipedia_passages.jsonl]

Takes a finished sweep's base model and best rung (its `best/adapter`), scores every passage
of a pool from the probe's corpus (the sweep's `data.general_probe` rows first, then passages
of `--corpus` that are in neither the probe nor the mix file), and compares the regression a
probe of n passages would see (the first n of the probe file: what a rung measures) with the
regression on 10 x n passages of the same corpus. Random draws of n passages give the spread
an arbitrary probe of that size would have. The recommended size is the smallest whose
regression agrees with the 10x figure within `--tolerance` (1 point of regression) for the
probe's own passages and for 90% of random draws; its cost per rung is the time one model
takes to score that many passages on one thread, as a trial does.

Writes Markdown and JSON under `--out` (default benchmarks/results/probe_size).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel

from hpo.results.rundir import RunDir
from trainers.data import read_jsonl
from trainers.models import load_base
from trainers.probes import passage_nll
from trainers.stages import load_recipe

SIZES = (10, 20, 30, 40, 60)
DRAWS = 200
TOLERANCE = 0.01  # one point of relative regression
QUANTILE = 0.9


def pool_texts(probe_file: str, mix_file: str | None, corpus: Path, needed: int) -> list[str]:
    """The probe's passages first, then corpus passages in neither the probe nor the mix."""
    probe = [row["text"] for row in read_jsonl(probe_file)]
    mixed = read_jsonl(mix_file) if mix_file else []
    taken = set(probe) | {row["text"] for row in mixed if "text" in row}  # an SFT mix holds prompts, not passages
    extra = [row["text"] for row in read_jsonl(corpus) if row["text"] not in taken]
    return (probe + extra)[:needed]


def per_passage(model, tokenizer, texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Each passage's summed NLL and token count, and the seconds per passage."""
    started = time.perf_counter()
    sums, counts = passage_nll(model, tokenizer, texts, max_len)
    return np.asarray(sums), np.asarray(counts, dtype=float), (time.perf_counter() - started) / len(texts)


def regression(base: tuple, best: tuple, index) -> float:
    """max(0, perplexity_best / perplexity_base - 1) over the passages `index`."""
    ppl = [math.exp(nll[index].sum() / tokens[index].sum()) for nll, tokens, _ in (base, best)]
    return max(0.0, ppl[1] / ppl[0] - 1.0)


def measure(base: tuple, best: tuple, sizes: tuple[int, ...], pool: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        reference = regression(base, best, np.arange(min(10 * n, pool)))
        in_loop = regression(base, best, np.arange(n))
        draws = [regression(base, best, rng.choice(pool, n, replace=False)) for _ in range(DRAWS)]
        spread = float(np.quantile(np.abs(np.asarray(draws) - reference), QUANTILE))
        rows.append(
            {
                "passages": n,
                "reference_passages": min(10 * n, pool),
                "in_loop": in_loop,
                "reference": reference,
                "difference": in_loop - reference,
                "draw_spread": spread,
            }
        )
    return rows


def chosen(rows: list[dict], tolerance: float) -> int | None:
    fits = [r["passages"] for r in rows if abs(r["difference"]) <= tolerance and r["draw_spread"] <= tolerance]
    return min(fits) if fits else None


def markdown(rows: list[dict], pick: int | None, seconds: float, run: Path, tolerance: float) -> str:
    lines = [
        f"# General probe size: in-loop regression against 10x the passages\n\nRun: `{run}`\n",
        "| passages | in-loop regression | 10x passages | regression there | difference | "
        f"random draws, {QUANTILE:.0%} within |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['passages']} | {r['in_loop']:.4f} | {r['reference_passages']} | {r['reference']:.4f} | "
        f"{r['difference']:+.4f} | {r['draw_spread']:.4f} |"
        for r in rows
    ]
    verdict = f"smallest size within {tolerance:g}: {pick}" if pick else f"no size within {tolerance:g}"
    lines += ["", f"{verdict}; one passage costs {seconds:.3f} s per model on one thread (a rung scores one model)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished sweep's run directory (with best/adapter)")
    parser.add_argument("--corpus", type=Path, default=Path("../shared/data/wikipedia_passages.jsonl"))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/probe_size"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run = RunDir(args.run)
    recipe, _ = load_recipe(run.recipe)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    texts = pool_texts(recipe.data.general_probe, recipe.data.general_mix, args.corpus, 10 * max(sizes))
    model, tokenizer = load_base(recipe.model, recipe.start_adapters)
    model.eval()
    base = per_passage(model, tokenizer, texts, recipe.training.max_seq_len)
    if recipe.method == "lora":
        tuned = PeftModel.from_pretrained(model, str(run.adapter))
    else:
        tuned = load_base(str(run.adapter))[0]
    tuned.eval()
    best = per_passage(tuned, tokenizer, texts, recipe.training.max_seq_len)
    rows = measure(base, best, sizes, len(texts))
    pick = chosen(rows, args.tolerance)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, pick, base[2], args.run, args.tolerance)
    (args.out / "results.md").write_text(text)
    document = {"run": str(args.run), "rows": rows, "chosen": pick, "seconds_per_passage": base[2], "pool": len(texts)}
    (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
