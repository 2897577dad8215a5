"""Extra `transformers.TrainerCallback`s a recipe names in `training.callbacks` ("package.module:Class").

They join the trainer next to the rung callback, after it, so they see each rung after
it was saved and reported. `import_root` (the sweep file's folder) comes first on the
import path, so a module next to the sweep file is found in every trial's process.
"""

from __future__ import annotations

from transformers import TrainerCallback

from trainers.imports import import_named
from trainers.recipe import Training


def import_callback(spec: str, import_root: str | None = None) -> type[TrainerCallback]:
    """The TrainerCallback class named "package.module:Class"; ValueError says what is wrong."""
    module_name, name, found = import_named(spec, import_root, "Class")
    if not (isinstance(found, type) and issubclass(found, TrainerCallback)):
        raise ValueError(f"module '{module_name}' has no transformers.TrainerCallback subclass '{name}'")
    return found


def load_callbacks(training: Training) -> list[TrainerCallback]:
    """One instance of every callback the recipe names, in order."""
    return [import_callback(spec, training.import_root)() for spec in training.callbacks]
