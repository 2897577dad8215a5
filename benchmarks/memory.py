"""Peak resident memory of one SFT trial against max_seq_len and the micro-batch, before and after.

    python -m benchmarks.memory [--sweep demo/definitions.yaml] [--points 128x8,320x4,320x8] [--steps 3]
        [--before-path CHECKOUT [--before-python PYTHON]]

Each point trains the sweep's recipe (its search space's defaults) for `--steps` optimizer steps
of one micro-batch each with the trainer a trial builds (`trainers.rungs.sft_trainer`), in a
new Python process of its own, one process at a time. The rung's probes are left out: they run
forward passes only, well below a training step's peak.
Three variants per point: `before` runs the same script on another checkout's code (the
`--before-*` interpreter and import path: the full-logits loss), `after` on this checkout's, and
`after+ckpt` this checkout's with `training.gradient_checkpointing: true`. Peak resident memory
is the process's own high-water mark (getrusage's ru_maxrss); the rung's training loss (the mean
over its steps) is printed beside it, so the variants can be seen to learn the same, and so is the
estimate `hpo validate` warns from (hpo.run.memory.trial_peak). Results go to
benchmarks/results/memory.json; figures with date and machine are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "memory.json"


def child(sweep: str, seq: int, batch: int, steps: int, checkpointing: bool) -> dict:
    """Train one trial's steps in this process and return its peak resident memory and mean loss."""
    import tempfile

    import torch

    try:
        from hpo.config.sweep_file import load_sweep
        from hpo.run.sweep import trial_recipe
    except ModuleNotFoundError:  # a checkout from before hpo/ was split into subpackages
        from hpo.sweep import trial_recipe

        from hpo.config import load_sweep
    from trainers import rungs, sft
    from trainers.models import load_base

    config = load_sweep(Path(sweep))
    recipe = trial_recipe(config).with_hyperparameters(config.space.defaults())
    training = dataclasses.replace(
        recipe.training,
        max_seq_len=seq,
        batch_size=batch,
        grad_accum=1,
        max_steps=steps,
        rung_interval=steps,
        gradient_checkpointing=checkpointing,
    )
    recipe = dataclasses.replace(recipe, training=training)
    torch.set_num_threads(training.threads)
    if hasattr(rungs, "map_large_blocks"):  # what train_stage does first, where the checkout has it
        rungs.map_large_blocks()
    start = time.monotonic()
    model, tokenizer = load_base(recipe.model)
    with tempfile.TemporaryDirectory() as folder:
        trainer = rungs.sft_trainer(recipe, sft.trainer_config, sft.training_rows)(model, tokenizer, Path(folder), [])
        loss = trainer.train().training_loss
    return {
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "train_loss": loss,
        "seconds": time.monotonic() - start,
    }


def run_point(python: str, path: str, sweep: str, seq: int, batch: int, steps: int, checkpointing: bool) -> dict:
    """One point in a new process: `python` importing the engine from `path`."""
    env = {**os.environ, "PYTHONPATH": path}
    argv = [python, str(HERE), "--child", sweep, str(seq), str(batch), str(steps), str(int(checkpointing))]
    done = subprocess.run(argv, env=env, cwd=path, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1], "returncode": done.returncode}
    return json.loads(lines[-1])


def estimate(sweep: str, seq: int, batch: int, checkpointing: bool) -> float:
    """hpo.run.memory's estimate of the same trial, in GB."""
    from hpo.config.sweep_file import load_sweep
    from hpo.run.memory import GB, model_shape, trial_peak

    config = load_sweep(Path(sweep))
    recipe = config.recipe.with_hyperparameters(config.space.defaults())
    training = dataclasses.replace(
        recipe.training, max_seq_len=seq, batch_size=batch, grad_accum=1, gradient_checkpointing=checkpointing
    )
    shape = model_shape(recipe.model)
    return trial_peak(shape, dataclasses.replace(recipe, training=training), on_gpu=False).total / GB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="demo/definitions.yaml")
    parser.add_argument("--points", default="128x8,320x4,320x8", help="max_seq_len x micro-batch, comma-separated")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--before-python", default=sys.executable, help="the interpreter for `before` (default: this one)")
    parser.add_argument("--before-path", default=None, help="a checkout of the code to compare with (`before`)")
    parser.add_argument("--variants", default="before,after,after+ckpt")
    parser.add_argument("--child", nargs=5, metavar=("SWEEP", "SEQ", "BATCH", "STEPS", "CKPT"))
    args = parser.parse_args(argv)
    if args.child:
        sweep, seq, batch, steps, ckpt = args.child
        print(json.dumps(child(sweep, int(seq), int(batch), int(steps), ckpt == "1")), flush=True)
        return 0
    if "before" in args.variants.split(",") and args.before_path is None:
        parser.error("--before-path: give a checkout of the earlier code, e.g. `git worktree add ../before d19f386~1`")
    sweep = str(Path(args.sweep).resolve())
    rows = []
    for point in args.points.split(","):
        seq, batch = (int(x) for x in point.split("x"))
        for variant in args.variants.split(","):
            before = variant == "before"
            python, path = (args.before_python, args.before_path) if before else (sys.executable, str(ROOT))
            ckpt = variant.endswith("+ckpt")
            result = run_point(python, path, sweep, seq, batch, args.steps, ckpt)
            row = {"max_seq_len": seq, "batch": batch, "variant": variant, **result}
            row["estimate_gb"] = round(estimate(sweep, seq, batch, ckpt), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=1) + "\n")
    print("\n| max_seq_len | batch | variant | peak resident GB | estimate GB | train loss |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        peak = f"{r['peak_gb']:.2f}" if "peak_gb" in r else f"failed: {r['error']}"
        print(f"| {r['max_seq_len']} | {r['batch']} | {r['variant']} | {peak} | {r['estimate_gb']} | {r.get('train_loss')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
