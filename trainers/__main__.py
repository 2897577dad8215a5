"""`python -m trainers recipe.yaml [--out DIR]`: rerun a recipe with the trainer of its stage.

An exported recipe names its stage; this picks that stage (trainers.stages) so that one
command reruns a recipe of any of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trainers.stages import STAGES, read_recipe


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    recipes = [a for a in argv if not a.startswith("-") and Path(a).suffix in (".yaml", ".yml")]
    if not recipes:
        print("usage: python -m trainers recipe.yaml [--out DIR] (a recipe written by `hpo export`)", file=sys.stderr)
        print("error: no recipe file given (pass a recipe.yaml written by `hpo export`)", file=sys.stderr)
        return 2
    recipe = read_recipe(Path(recipes[0]))  # every problem with the file, before a trainer imports torch
    if recipe is None:
        return 2
    return STAGES[recipe.stage].main(argv)  # read_recipe checked the stage


if __name__ == "__main__":
    sys.exit(main())
