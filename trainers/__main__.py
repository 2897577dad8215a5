"""`python -m trainers recipe.yaml [--out DIR]`: rerun a recipe with the trainer of its stage.

An exported recipe names its stage (sft, cpt or rft); this picks `trainers.<stage>` so
that one command reruns any of them.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import yaml

STAGES = ("sft", "cpt", "rft")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    recipes = [a for a in argv if not a.startswith("-") and Path(a).suffix in (".yaml", ".yml")]
    if not recipes or not Path(recipes[0]).is_file():
        print("usage: python -m trainers recipe.yaml [--out DIR] (a recipe written by `hpo export`)", file=sys.stderr)
        return 2
    document = yaml.safe_load(Path(recipes[0]).read_text()) or {}
    stage = (document.get("recipe") or {}).get("stage")
    if stage not in STAGES:
        print(f"error: {recipes[0]}: recipe.stage must be one of {', '.join(STAGES)}, got {stage!r}", file=sys.stderr)
        return 2
    return importlib.import_module(f"trainers.{stage}").main(argv)


if __name__ == "__main__":
    sys.exit(main())
