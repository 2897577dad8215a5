"""What a training stage is: the base every stage derives from, one module per stage (trainers/<name>.py).

A stage owns its behaviour. The engine (hpo/) and the shared trainer code call the methods
below and read no per-stage flags:

- the sweep file: its methods and built-in spaces, its hyperparameters (a dataclass with the
  method's published defaults), what its `task` section holds (`read_task`), whether general
  rows are mixed into its training (`read_data`), the fields of its rows (`row_problems`), the
  scoring its references must suit (`reference_scoring`), what else it checks of a sweep
  (`sweep_problems`) and the rung limits it adds to the objective (`rung_limits`);
- judging: its domain metric and probe, what guessing scores (`chance`), whether its base
  figures may be cached, the gate on its starting model and the next step after a clear win;
- training: `train`, `trainer_config` (the TRL config it trains with) and `main` (rerunning
  an exported recipe standalone).

A stage module stays importable without torch: reading a sweep file asks the stage, and only
training, probing and building a TRL config import the libraries that need it. The table of
stages is trainers.stages.STAGES; a new stage is its module, one line there, its search
space, its tiny sweep (tests/stage_fixtures/) and its row in docs/stages.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from trainers.checkpoints import copy_weights
from trainers.data import check_rows
from trainers.recipe import Hyperparameters, MixedHyperparameters, Recipe, Training, read_recipe
from trainers.shared import DomainMetric, Scoring

if TYPE_CHECKING:
    from trainers.probes import ProbeSet  # imports torch

METHODS = ("lora", "full")
# report(step, metrics, checkpoint_dir) -> stop: trainers.rungs.Report
Report = Callable[[int, dict[str, float], Path], Any]
# domain_probe(model, tokenizer, probes) -> (metrics, predictions) (trainers.probes)
Probed = tuple[dict[str, float], dict[str, list]]


class TaskFields(Protocol):
    """The sweep file's `task` section as a stage asks for it (hpo.config.task reads it and reports its problems)."""

    def require(self) -> None:
        """The section must be given."""

    def labels(self) -> None:
        """Optional `labels`: given, every reference must be one."""

    def scorer(self) -> None:
        """`metric`: the scorer answers are judged by (any scorer, with its `pattern`)."""

    def own_metric(self, name: str) -> None:
        """`metric`, if given, must be `name`: the stage's own, not a scorer's."""

    def reward(self) -> None:
        """`reward`: required, what each sampled answer earns."""


class DataFields(Protocol):
    """The sweep file's `data` section as a stage asks for it (hpo.config.sweep_file reads it)."""

    def general_mix(self) -> None:
        """`general_mix` is required: general rows are mixed into training."""

    def no_general_mix(self, reason: str) -> None:
        """`general_mix` is refused: the stage trains on its domain rows alone, for `reason`."""


class Stage(ABC):
    """One training stage: its data and task rules, its domain metric and probe, its spaces and its trainer.

    The defaults are those of a stage that trains on prompt-completion rows mixed with
    general rows and is judged on its generated answers (SFT); a stage overrides what differs.
    """

    name: ClassVar[str]
    methods: ClassVar[tuple[str, ...]] = METHODS
    spaces: ClassVar[Mapping[str, str]] = {}  # method -> the built-in search space (search_spaces/<name>.yaml)
    hyperparameters: ClassVar[type[Hyperparameters]] = MixedHyperparameters  # with the method's published defaults
    row_fields: ClassVar[tuple[str, ...]] = ("prompt", "completion")  # what every domain (and mixed-in) row holds
    scale_up: ClassVar[str] = ""  # the next step after a clear win (hpo.results.report)
    sequences_per_row: ClassVar[int] = 1  # sequences one row puts through the model in a training step (hpo.run.memory)
    full_rank_reference: ClassVar[bool] = False  # full-rank training keeps a frozen copy of the start (hpo.run.memory)

    # --- the sweep file -----------------------------------------------------------------------

    def builtin_space(self, method: str) -> str | None:
        """The built-in search space for `method`, or None where the sweep file must give one."""
        return self.spaces.get(method)

    def read_task(self, task: TaskFields) -> None:
        """What the `task` section holds: labels (optional) and the scorer answers are judged by."""
        task.require()
        task.labels()
        task.scorer()

    def read_data(self, data: DataFields) -> None:
        """What the `data` section holds beyond the domain and probe files: the general rows mixed in."""
        data.general_mix()

    def row_problems(self, path: Path, key: str, labels: tuple[str, ...] = ()) -> list[str]:
        """Problem lines for a file of the rows it trains on (domain or mixed-in), each naming file, row and fix."""
        return check_rows(path, key, self.row_fields, labels)

    def reference_scoring(self, metric: Scoring, reward: Scoring | None) -> Scoring | None:
        """The scoring every domain row's reference must suit (checked before anything runs), or None."""
        return metric

    def sweep_problems(self, training: Training, values: Callable[[str], tuple[Any, ...]]) -> list[tuple[str, str]]:
        """(key, problem) for what this stage cannot run; `values(name)` is every value a training setting or
        hyperparameter takes over the sweep (its space's values or range, else the sweep file's or the default)."""
        return []

    def rung_limits(self) -> Mapping[str, float]:
        """The objective's rung limits that apply to this stage (`max_kl`, ...), with their defaults."""
        return {}

    def rows_per_step(self, batch: int, hyperparameters: Hyperparameters) -> float:
        """Domain rows one optimizer step consumes out of `batch` (batch x grad accumulation) rows: a mixed
        batch holds general rows too (the domain share is the mixing ratio)."""
        return batch * hyperparameters.mixing_ratio

    # --- judging --------------------------------------------------------------------------------

    def domain_metric(self, scoring: Scoring) -> DomainMetric:
        """The rung metric the stage is judged on: the mean score of its answers by `scoring`."""
        return DomainMetric(f"domain_{scoring.metric_key}")

    def domain_probe(self, model: Any, tokenizer: Any, probes: ProbeSet) -> Probed:
        """Greedy answers to the held-out prompts, scored by the task's scorer (trainers.probes)."""
        from trainers.probes import answers_probe  # torch: only where a model is probed

        return answers_probe(model, tokenizer, probes)

    def chance(self, recipe: Recipe, probes: ProbeSet) -> dict[str, Any]:
        """What guessing scores on the probe rows of a label task (trainers.scorers.chance_scores); {} without labels."""
        if not recipe.labels:
            return {}
        from trainers.scorers import chance_scores

        return chance_scores(probes.scorer, probes.domain, recipe.labels)

    def baseline_cacheable(self, recipe: Recipe) -> bool:
        """Whether the base model's figures depend only on the model, files and settings: not on a scorer
        that does not declare itself deterministic (code or a service a cache cannot see)."""
        from trainers.scorers import deterministic  # imports a user's scorer to ask it

        return deterministic(recipe.metric)

    def start_gate(self, metrics: Mapping[str, float], prompts: int, allow: bool) -> tuple[str, str]:
        """(refusal naming the key, warning) about starting from a model with these base figures; either may be
        empty. `allow` runs it anyway (`--allow-low-reward`)."""
        return "", ""

    # --- training -------------------------------------------------------------------------------

    @abstractmethod
    def train(
        self, recipe: Recipe, report: Report, work_dir: Path | None = None, resume_from: Path | None = None
    ) -> dict[str, float]:
        """Train `recipe`, reporting every rung; returns the last rung's metrics. `resume_from` is a rung
        checkpoint of this recipe (as handed to `report`) to go on from."""

    @abstractmethod
    def trainer_config(self, recipe: Recipe, output_dir: Path = Path("output")) -> Any:
        """The TRL config object the stage's trainer builds for `recipe`."""

    def main(self, argv: list[str] | None = None) -> int:
        """`python -m trainers.<name> recipe.yaml [--out DIR]`: rerun an exported recipe of this stage."""
        return rerun(self.train, self.name, self.hyperparameters, argv)


def rerun(
    train_recipe: Callable[[Recipe, Report], dict],
    stage: str,
    hyperparameters: type[Hyperparameters],
    argv: list[str] | None,
) -> int:
    """`python -m trainers.<stage> recipe.yaml --out DIR`: one rung per line, then DIR/metrics.json
    and DIR/adapter/ (the last rung's adapter, or whole model for `method: full`). `hyperparameters`
    is the stage's dataclass."""
    parser = argparse.ArgumentParser(prog=f"python -m trainers.{stage}", description=f"Rerun a {stage} recipe.")
    parser.add_argument("recipe", type=Path, help="recipe YAML (as written by `hpo export`)")
    parser.add_argument("--out", type=Path, default=None, help="folder for metrics.json and the final adapter")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    recipe = read_recipe(args.recipe, {stage: hyperparameters})  # another stage's recipe: python -m trainers
    if recipe is None:
        return 2
    out = args.out or args.recipe.parent / "rerun"
    out.mkdir(parents=True, exist_ok=True)

    def report(step: int, metrics: dict[str, float], checkpoint: Path) -> None:
        print(json.dumps({"step": step, **metrics}), flush=True)
        if step >= recipe.training.last_step:
            copy_weights(checkpoint, out / "adapter")  # the optimizer and RNG state stay behind

    from trainers import distributed  # imports torch: only once the recipe is known to be good

    final = train_recipe(recipe, report)
    if distributed.is_main():  # the one process that probed and reported (under torchrun: rank 0)
        (out / "metrics.json").write_text(json.dumps(final, indent=2))
    return 0
