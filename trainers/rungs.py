"""The rung loop every trainer runs: probe, save and report at every rung, stop, resume and fail alike.

A stage's trainer (trainers.sft, trainers.cpt, trainers.rft) builds its TRL trainer and hands
it to `train_stage`, which loads the base model and the probes, attaches a `RungCallback` and
trains. At every rung the callback asks the Trainer to save its full state, runs the shared
probes, writes the rung's metrics and predictions into the checkpoint, marks it complete and
calls `report`. The same loop is what `python -m trainers.<stage> recipe.yaml` runs
(`trainers.stage.rerun`), so a standalone rerun reports exactly what a trial reported.

Over several processes (torchrun, or a trial's `resources.workers`; trainers.distributed)
every rank trains and writes its part of each rung's checkpoint; rank 0 alone probes,
reports, and tells the others whether to stop there.

A rung result's `final` flag (trainers.flags) says it is the last rung of the schedule.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel
from transformers import PrinterCallback, TrainerCallback, set_seed
from trl import SFTTrainer

from trainers import distributed
from trainers.callbacks import load_callbacks
from trainers.checkpoints import METRICS, mark_complete
from trainers.lm_loss import compact_lm_head
from trainers.models import load_base, load_copy, training_dtype
from trainers.probes import DomainProbe, ProbeSet, load_probes, run_probes
from trainers.recipe import Recipe
from trainers.shared import Diverged, Flag, OutOfMemory

log = logging.getLogger(__name__)

# report(step, metrics, checkpoint_dir) -> stop: the folder (a complete trainer checkpoint,
# see trainers.checkpoints) is only valid during the call; a true answer stops training
# after this rung (e.g. a guardrail tripped).
Report = Callable[[int, dict[str, float], Path], bool | None]
# make_trainer(model, tokenizer, output_dir, callbacks) -> a transformers Trainer (TRL's SFTTrainer, GRPOTrainer)
MakeTrainer = Callable[[Any, Any, Path, list[TrainerCallback]], Any]
# Trainer log keys averaged over each rung's window, and the metric names they get.
LOSS_WINDOW = {"loss": "train_loss"}
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter: the size from which a block is mapped for itself
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, held fixed


def map_large_blocks() -> None:
    """Have glibc map every block of MMAP_THRESHOLD bytes or more for itself, so that freeing it gives the
    memory back to the OS at once. By default glibc raises that threshold (up to 32 MB) each time such a block
    is freed, after which a step's layer-sized tensors come from its heap, which fragments: a CPU trial held
    gigabytes more resident than its tensors (benchmarks/README.md, "Memory of one trial"). Not glibc: no-op."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


def out_of_memory(err: BaseException) -> bool:
    """torch's OutOfMemoryError, or the RuntimeError older CUDA paths raise ("CUDA out of memory")."""
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err)


def common_args(recipe: Recipe, output_dir: Path) -> dict[str, Any]:
    """The TRL config arguments every stage sets the same way: schedule, batch, memory savers, seeds,
    logging, device, and DDP or FSDP over several processes."""
    hp, training = recipe.hyperparameters, recipe.training
    micro_batch, accumulation = training.batch_plan(distributed.world_size())
    return {
        "output_dir": str(output_dir),
        "max_steps": training.max_steps,
        "learning_rate": hp.learning_rate,
        "warmup_steps": hp.warmup_ratio,  # a value below 1 is a ratio of max_steps
        "weight_decay": hp.weight_decay,
        "per_device_train_batch_size": micro_batch,
        "gradient_accumulation_steps": accumulation,
        "activation_checkpointing": training.gradient_checkpointing,
        "seed": recipe.seed,
        "data_seed": recipe.seed,
        "logging_steps": 1,
        "logging_nan_inf_filter": False,  # a NaN loss must reach the divergence check, not be smoothed over
        "save_strategy": "no",  # RungCallback asks for a save at every rung
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": training_dtype() == torch.bfloat16,
        **distributed.parallel_args(training.sharded(recipe.method), training.gradient_checkpointing),
    }


def lora_config(recipe: Recipe) -> LoraConfig:
    hp = recipe.hyperparameters
    return LoraConfig(
        r=hp.lora_rank,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def adapter_config(recipe: Recipe) -> LoraConfig | None:
    """The LoRA adapter to train, or None for `method: full` (every weight trains)."""
    return lora_config(recipe) if recipe.method == "lora" else None


class RungCallback(TrainerCallback):
    """Probes, saves and reports at every rung; stops at `stop_at_step` or when `report` says so;
    catches divergence.

    At a rung step it asks the Trainer to save its full state (weights, optimizer,
    scheduler, RNG, trainer_state.json); once saved (`on_save`) the probes run, their
    metrics and predictions join the folder, `complete.json` is written last and the
    folder goes to `report`. `window` maps trainer log keys to metric names averaged over
    each rung's window (e.g. GRPO's "kl"); `extra` adds metrics the trainer collects
    itself. `resumed` are the metrics of the rung that training resumed from, if any.
    """

    def __init__(
        self,
        recipe: Recipe,
        probes: ProbeSet | None,  # None on the ranks that do not probe
        tokenizer,
        report: Report,
        window: Mapping[str, str] = LOSS_WINDOW,
        extra: Callable[[], dict[str, float]] | None = None,
        resumed: Mapping[str, float] | None = None,
    ) -> None:
        self.recipe, self.probes, self.tokenizer, self.report = recipe, probes, tokenizer, report
        self.window_names, self.extra = dict(window), extra
        self.resumed_from = {"resumed_from_step": resumed["step"]} if resumed else {}
        self.started = time.perf_counter()
        self.train_seconds_before = float(resumed["train_seconds"]) if resumed else 0.0  # earlier attempts
        self.probe_seconds = float(resumed["probe_seconds"]) if resumed else 0.0
        self.rung_seconds = 0.0  # checkpoint save + probes + report, all rungs of this attempt
        self.rung_started = self.started
        self.window: dict[str, list[float]] = {name: [] for name in self.window_names.values()}
        self.last_metrics: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()  # model load and tokenization are not training time

    def on_log(self, args, state, control, logs=None, **kwargs):
        for what in ("loss", "grad_norm"):
            value = (logs or {}).get(what)
            if value is not None and not math.isfinite(value):
                raise Diverged(state.global_step, what, value)
        for key, name in self.window_names.items():
            if (logs or {}).get(key) is not None:
                self.window[name].append(float(logs[key]))

    def is_rung(self, step: int) -> bool:
        return step % self.recipe.training.rung_interval == 0 or step >= self.recipe.training.last_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.is_rung(state.global_step):
            self.rung_started = time.perf_counter()
            control.should_save = True  # the Trainer saves its state, then calls on_save: the rung
        if state.global_step >= self.recipe.training.last_step:
            control.should_training_stop = True

    def on_save(self, args, state, control, model=None, **kwargs):
        if not self.is_rung(state.global_step):  # a save some other callback asked for
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        distributed.barrier()  # every rank's part of the checkpoint is on disk
        probed = probe_model(model, self.tokenizer, checkpoint)
        stop = self.rung(state.global_step, state, probed, checkpoint) if distributed.is_main() else False
        del probed
        if distributed.agree(stop):
            control.should_training_stop = True

    def window_means(self) -> dict[str, float]:
        """Each window metric's mean since the last rung; train_loss is 0.0 before any loss is logged."""
        means = {name: sum(values) / len(values) for name, values in self.window.items() if values}
        means.setdefault("train_loss", 0.0)
        self.window = {name: [] for name in self.window}
        return means

    def rung(self, step: int, state, model, checkpoint: Path) -> bool:
        probes_started = time.perf_counter()
        metrics, predictions = run_probes(model, self.tokenizer, self.probes)
        if step >= self.recipe.training.last_step and self.recipe.general.benchmarks_each_trial:
            metrics.update(benchmark_metrics(model, self.tokenizer, self.recipe))
        self.probe_seconds += time.perf_counter() - probes_started
        metrics.update(
            step=step,
            epoch=float(state.epoch or 0.0),
            **self.window_means(),
            **(self.extra() if self.extra else {}),
            tokens_seen=float(state.num_input_tokens_seen),
            train_seconds=self.train_seconds_before + self.rung_started - self.started - self.rung_seconds,
            probe_seconds=self.probe_seconds,
            **{Flag.FINAL: float(step >= self.recipe.training.last_step)},
            **self.resumed_from,
        )
        (checkpoint / "predictions.json").write_text(json.dumps(predictions))
        (checkpoint / METRICS).write_text(json.dumps(metrics))
        mark_complete(checkpoint)  # last: a folder without it is never resumed from or exported
        stop = self.report(step, metrics, checkpoint)
        shutil.rmtree(checkpoint, ignore_errors=True)
        self.last_metrics = metrics
        self.rung_seconds += time.perf_counter() - self.rung_started
        return bool(stop)


def probe_model(model: Any, tokenizer: Any, checkpoint: Path) -> Any:
    """What rank 0 probes (None on the other ranks): the model itself, or, where FSDP shards it, a whole
    copy made from its gathered weights, which also go into the checkpoint (with the tokenizer) for an
    export to load; the sharded state stays beside them for resuming."""
    if not distributed.is_sharded(model):
        return model
    weights = distributed.full_weights(model)  # every rank takes part
    if not distributed.is_main():
        return None
    model.save_pretrained(checkpoint, state_dict=weights)
    tokenizer.save_pretrained(checkpoint)
    return load_copy(checkpoint)


def benchmark_metrics(model: Any, tokenizer: Any, recipe: Recipe) -> dict[str, float]:
    """The recipe's benchmarks (lm-eval) on the model as it is: `benchmark_<task>` with its interval."""
    from trainers.harness import run_benchmarks  # imports lm-eval: only when a sweep asks for it

    results = run_benchmarks(model, tokenizer, recipe.general.benchmarks, recipe.system_prompt)
    return {k: v for task, result in results.items() for k, v in result["estimate"].columns(f"benchmark_{task}").items()}


def resumed_metrics(resume_from: Path | None) -> dict[str, float] | None:
    """The metrics of the rung checkpoint training resumes from (None: a fresh start)."""
    return json.loads((resume_from / METRICS).read_text()) if resume_from else None


def run_training(trainer, callback: RungCallback, resume_from: Path | None) -> dict[str, float]:
    """Train (from `resume_from`, a rung checkpoint, when given); returns the last rung's metrics.

    Running out of accelerator memory becomes `OutOfMemory`, with the step it happened at.
    """
    trainer.remove_callback(PrinterCallback)  # rungs are reported, not every log line
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except RuntimeError as err:  # torch.OutOfMemoryError is one
        if not out_of_memory(err):
            raise
        raise OutOfMemory(trainer.state.global_step, trainer.args.per_device_train_batch_size) from err
    return callback.last_metrics


def sft_trainer(
    recipe: Recipe, config: Callable[[Recipe, Path], Any], rows: Callable[[Recipe], list[dict]]
) -> MakeTrainer:
    """A `make_trainer` for TRL's SFTTrainer: `config(recipe, output_dir)` over the rows `rows(recipe)`
    (SFT's prompt-completion rows, CPT's text rows), a LoRA adapter unless every weight trains."""

    def make(model: Any, tokenizer: Any, output_dir: Path, callbacks: list[TrainerCallback]) -> SFTTrainer:
        trainer = SFTTrainer(
            model=model,
            args=config(recipe, output_dir),
            train_dataset=Dataset.from_list(rows(recipe)),
            processing_class=tokenizer,
            peft_config=adapter_config(recipe),
            callbacks=callbacks,
        )
        # the loss on the completion's tokens only, in small tiles, where TRL's own head scores every token
        compact_lm_head(trainer.model.get_base_model() if isinstance(trainer.model, PeftModel) else trainer.model)
        return trainer

    return make


def train_stage(
    recipe: Recipe,
    report: Report,
    make_trainer: MakeTrainer,
    domain_probe: DomainProbe,
    *,
    work_dir: Path | None = None,
    resume_from: Path | None = None,
    window: Mapping[str, str] = LOSS_WINDOW,
    extra: Callable[[], dict[str, float]] | None = None,
) -> dict[str, float]:
    """Load the base model and probes, build the stage's trainer and train it rung by rung.

    Returns the last rung's metrics. `domain_probe` is the stage's (trainers.stage.Stage);
    `resume_from` is a rung checkpoint of this recipe (as handed to `report`) to go on from;
    `window` and `extra` are RungCallback's.
    """
    torch.set_num_threads(recipe.training.threads)
    map_large_blocks()
    set_seed(recipe.seed)
    every_weight = adapter_config(recipe) is None
    model, tokenizer = load_base(recipe.model, recipe.start_adapters, recipe.training.load_in_4bit, every_weight)
    probes = load_probes(recipe, domain_probe) if distributed.is_main() else None
    with distributed.shared_scratch(f"{recipe.stage}-", work_dir) as scratch:
        callback = RungCallback(
            recipe, probes, tokenizer, report, window=window, extra=extra, resumed=resumed_metrics(resume_from)
        )
        callbacks = [callback, *load_callbacks(recipe.training)]
        trainer = make_trainer(model, tokenizer, Path(scratch) / "trainer", callbacks)
        return run_training(trainer, callback, resume_from)
