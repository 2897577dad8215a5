"""The stages a sweep tunes, in one plain table (`STAGES`, by name): each is a `Stage` (trainers.stage)
defined in its own module.

The engine (hpo/) and the trainers look a stage up here and call its methods instead of
comparing its name or reading its flags. Importing this table imports no torch: a stage's
module imports its training libraries only when it trains, probes or builds a config.

A new stage is one module (trainers/<name>.py: its `Stage` subclass and its trainer), one
entry below, its search space in search_spaces/, its tiny sweep in tests/stage_fixtures/ and
its row in docs/stages.md. Reading a recipe file needs the stage's hyperparameters
dataclass, so the recipe readers every part of the engine uses are here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers import recipe as recipe_file
from trainers.cpt import CPT
from trainers.dpo import DPO
from trainers.recipe import Recipe
from trainers.rft import RFT
from trainers.sft import SFT
from trainers.shared import DomainMetric
from trainers.stage import METHODS, Stage

STAGES: dict[str, Stage] = {stage.name: stage for stage in (SFT, CPT, RFT, DPO)}
DEFAULT_STAGE = SFT

__all__ = ["METHODS", "STAGES", "Stage", "stage_of", "users_of", "domain_metric", "load_recipe", "read_recipe"]


def stage_of(name: str) -> Stage:
    """The registered stage called `name`; ValueError lists the known ones."""
    if name not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {name!r}")
    return STAGES[name]


def users_of(hyperparameter: str) -> tuple[str, ...]:
    """The stages whose hyperparameters include `hyperparameter`."""
    return tuple(name for name, stage in STAGES.items() if hyperparameter in recipe_file.hyperparameter_names(stage.hyperparameters))


def all_tunable_names() -> tuple[str, ...]:
    """What a search space of some stage may tune: every stage's hyperparameters and the training settings."""
    names = (n for stage in STAGES.values() for n in recipe_file.tunable_names(stage.hyperparameters))
    return tuple(dict.fromkeys(names))


def domain_metric(recipe: Recipe) -> DomainMetric:
    """The rung metric a recipe is judged on: its stage's, or the mean score of its answers by its scorer."""
    return stage_of(recipe.stage).domain_metric(recipe.metric)


HYPERPARAMETERS = {name: stage.hyperparameters for name, stage in STAGES.items()}


def recipe_from_dict(plain: dict[str, Any]) -> Recipe:
    """The recipe `Recipe.to_dict` gave, of any registered stage; unknown keys raise TypeError naming them."""
    return recipe_file.recipe_from_dict(plain, stage_of(plain["stage"]).hyperparameters)


def load_recipe(path: Path) -> tuple[Recipe, dict[str, Any]]:
    """The recipe in a YAML file (of any registered stage) and the file's other sections (trainers.recipe)."""
    return recipe_file.load_recipe(path, HYPERPARAMETERS)


def read_recipe(path: Path) -> Recipe | None:
    """The recipe in `path` for a command line, or None after printing its problems (trainers.recipe)."""
    return recipe_file.read_recipe(path, HYPERPARAMETERS)
