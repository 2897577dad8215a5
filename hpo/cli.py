"""`hpo`: validate a sweep file, run a sweep, export the best recipe."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import yaml

from hpo.errors import EXIT_BAD_INPUT, InputError
from trainers.model_store import ModelError

log = logging.getLogger("hpo")
SHOWN_METRICS = ("objective", "domain_exact_match", "domain_parse_rate", "general_perplexity", "instruction_nll")


def cmd_validate(args: argparse.Namespace) -> int:
    from hpo.config import load_sweep

    config = load_sweep(args.sweep)
    print(
        f"ok: {args.sweep}: {config.recipe.stage}/{config.recipe.method}, "
        f"{len(config.space.parameters)} parameters from {config.space.path}, "
        f"{config.budget.trials} trials x up to {config.scheduler.max_steps} steps"
    )
    return 0


def print_metrics(title: str, metrics: dict) -> None:
    shown = {k: metrics[k] for k in SHOWN_METRICS if metrics.get(k) is not None}
    print(f"{title}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()), flush=True)


def cmd_sweep(args: argparse.Namespace) -> int:
    from hpo.config import load_sweep

    config = load_sweep(args.sweep)  # every input problem surfaces here, before any side effect
    from hpo.evaluate import evaluate_best, format_confusion
    from hpo.live import LiveView
    from hpo.sweep import prepare, run_sweep

    print(f"measuring the base model {config.recipe.model} on the probes ...", flush=True)
    run_dir, baseline = prepare(config)
    print_metrics("baseline", baseline["metrics"])
    live = None if args.quiet else LiveView(config.budget.trials, config.scheduler.max_steps)
    run_sweep(config, run_dir, baseline, live)
    recipe = run_dir / "best" / "recipe.yaml"
    print_metrics("best (validation)", yaml.safe_load(recipe.read_text())["expected"])
    scores = evaluate_best(run_dir)
    if scores:
        print_metrics(f"base (test, {scores['examples']} examples)", scores["base"])
        print_metrics(f"best (test, {scores['examples']} examples)", scores["best"])
        print(format_confusion(scores["confusion"]))
    print(f"run directory: {run_dir}")
    print(f"best recipe:   {recipe}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hpo.export import export_best

    if not (args.run_dir / "spec.yaml").is_file():
        raise InputError([f"{args.run_dir}: spec.yaml not found (give a run directory written by `hpo sweep`)"])
    print(export_best(args.run_dir))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hpo", description="Hyperparameter optimization for LLM customization.")
    commands = top.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a sweep file; every problem at once, no side effects")
    validate.add_argument("sweep", type=Path, help="sweep YAML file")
    validate.set_defaults(run=cmd_validate)
    sweep = commands.add_parser("sweep", help="run a sweep (embedded Ray, or RAY_ADDRESS when set)")
    sweep.add_argument("sweep", type=Path, help="sweep YAML file")
    sweep.add_argument("--quiet", action="store_true", help="no live view (for CI logs)")
    sweep.set_defaults(run=cmd_sweep)
    export = commands.add_parser("export", help="write the best recipe of a run directory")
    export.add_argument("run_dir", type=Path, help="run directory written by `hpo sweep`")
    export.set_defaults(run=cmd_export)
    return top


def quiet_libraries() -> None:
    """Progress bars and INFO chatter from the ML libraries drown the sweep's own lines."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")  # inherited by trial workers too
    logging.getLogger("optuna").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_libraries()
    try:
        return args.run(args)
    except InputError as err:
        for line in err.problems:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
