"""The stages a sweep tunes, each a small object: what its data holds, what it is judged on, how it trains.

    STAGES = {"sft": SFT, "cpt": CPT, "rft": RFT}

The engine (hpo/) and the trainers look a stage up here instead of comparing its name:
the sweep-file checks read its data and task rules, the objective its domain metric, the
exports its trainer's config builder, a trial its trainer. A stage's trainer lives in its
own module (`trainers.sft`, ...), imported only when a stage trains or builds a config, so
reading a sweep file never imports torch. Each trainer module has the same three entry
points: `train(recipe, report, work_dir=None, resume_from=None)`,
`trainer_config(recipe, output_dir)` (the TRL config it trains with) and `main(argv)`.

A new stage is one trainer module and one entry in STAGES.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from trainers.data import PROMPT_FIELDS, TEXT_FIELDS
from trainers.shared import DomainMetric

if TYPE_CHECKING:
    from trainers.recipe import Hyperparameters, Recipe
    from trainers.shared import Scoring

METHODS = ("lora", "full")
GRPO_HYPERPARAMETERS = frozenset({"beta", "num_generations", "temperature"})


@dataclass(frozen=True)
class Stage:
    """One stage: its data and task rules, its domain metric, its search spaces and its trainer.

    - `row_fields`: what every domain row (and general-mix row) holds.
    - `general_mix`: whether general rows are mixed into training (required then, refused otherwise).
    - `task_required`, `reads_labels`: what the sweep file's `task` section must give (labels are
      optional: given, every reference must be one).
    - `reward`: the task names a reward (`task.reward`), which scores sampled answers.
    - `probe`: the domain probe each rung runs (trainers.probes.DOMAIN_PROBES).
    - `scores_answers`: its domain metric is the mean score of generated answers by the task's
      scorer (`task.metric`, any scorer); otherwise it is `metric`, and `task_metric` names it.
    - `own_hyperparameters`: hyperparameters that only this stage uses.
    - `grouped_generations`: each batch holds `num_generations` sampled answers per prompt.
    - `packs`: its training rows can be packed into max_seq_len sequences (`training.packing`).
    - `rung_guardrails`: the KL and reward blow-up limits apply to its rungs.
    - `gate_metric`: the baseline metric the start gate reads (RFT's positive-reward rate).
    - `baseline_cacheable`: its baseline depends only on the model and the probe files.
    - `scale_up`: the next step after a clear win.
    """

    name: str
    module: str
    methods: tuple[str, ...]
    spaces: Mapping[str, str]  # method -> built-in search space
    row_fields: tuple[str, ...]
    probe: str
    scale_up: str
    metric: DomainMetric | None = None  # None: the task scorer's (scores_answers)
    task_metric: str | None = None  # the only `task.metric` it accepts (None: any scorer)
    scores_answers: bool = False
    general_mix: bool = True
    task_required: bool = True
    reads_labels: bool = True
    reward: bool = False
    own_hyperparameters: frozenset[str] = field(default_factory=frozenset)
    grouped_generations: bool = False
    packs: bool = True
    rung_guardrails: bool = False
    gate_metric: str | None = None
    baseline_cacheable: bool = True

    def domain_metric(self, scoring: Scoring) -> DomainMetric:
        """The rung metric the stage is judged on: its own, or the mean score of its answers by `scoring`."""
        if self.metric is not None:
            return self.metric
        return DomainMetric(f"domain_{scoring.metric_key}")

    def trainer(self) -> ModuleType:
        """The stage's trainer module (imports torch, transformers and TRL)."""
        return importlib.import_module(self.module)

    def train(self, recipe: Recipe, report: Any, work_dir: Path | None = None, resume_from: Path | None = None):
        return self.trainer().train(recipe, report, work_dir=work_dir, resume_from=resume_from)

    def trainer_config(self, recipe: Recipe, output_dir: Path = Path("output")):
        """The TRL config object the stage's trainer builds for `recipe`."""
        return self.trainer().trainer_config(recipe, output_dir)

    def rows_per_step(self, batch: int, hyperparameters: Hyperparameters) -> float:
        """Domain rows one optimizer step consumes out of `batch` (batch x grad accumulation) rows.

        A mixed batch holds general rows too (the domain share is the mixing ratio); a grouped
        batch holds num_generations answers to each prompt.
        """
        if self.grouped_generations:
            return batch / hyperparameters.num_generations
        if self.general_mix:
            return batch * hyperparameters.mixing_ratio
        return float(batch)


SFT = Stage(
    name="sft",
    module="trainers.sft",
    methods=("lora", "full"),
    spaces={"lora": "sft_lora", "full": "sft_full"},
    row_fields=PROMPT_FIELDS,
    probe="answers",
    scores_answers=True,
    scale_up="LoRA has shown the task is learnable from this data: a full-rank SFT run, or RFT where answers "
    "can be checked automatically, is the next step.",
)
CPT = Stage(
    name="cpt",
    module="trainers.cpt",
    methods=("lora", "full"),
    spaces={"lora": "cpt"},
    metric=DomainMetric("domain_perplexity", higher_is_better=False),
    task_metric="perplexity",
    row_fields=TEXT_FIELDS,
    probe="perplexity",
    task_required=False,
    reads_labels=False,
    scale_up="The domain text is being learnt: a full-rank continued pre-training run, then SFT on the task, "
    "is the next step.",
)
RFT = Stage(
    name="rft",
    module="trainers.rft",
    methods=("lora",),
    spaces={"lora": "rft"},
    metric=DomainMetric("reward_mean"),
    task_metric="reward",
    row_fields=PROMPT_FIELDS,
    probe="reward",
    general_mix=False,
    reward=True,
    own_hyperparameters=GRPO_HYPERPARAMETERS,
    grouped_generations=True,
    packs=False,  # it samples completions to prompts: nothing to pack
    rung_guardrails=True,
    gate_metric="positive_reward_rate",
    baseline_cacheable=False,  # the reward is code (or a service) whose behaviour a cache cannot see
    scale_up="The reward is being learnt: a longer RFT run on more prompts, or full-rank RFT, is the next step.",
)

STAGES: dict[str, Stage] = {stage.name: stage for stage in (SFT, CPT, RFT)}


def stage_of(name: str) -> Stage:
    """The registered stage called `name`; ValueError lists the known ones."""
    if name not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {name!r}")
    return STAGES[name]


def users_of(hyperparameter: str) -> tuple[str, ...]:
    """The stages that own `hyperparameter` (empty when every stage may use it)."""
    return tuple(name for name, stage in STAGES.items() if hyperparameter in stage.own_hyperparameters)
