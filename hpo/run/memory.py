"""One trial's peak memory, estimated before the sweep starts, and whether `concurrency` trials fit.

`trial_peak` adds up what a trial's process holds at once: its libraries, the model's weights,
the trainable parameters' gradients and AdamW's two moments, the activations autograd keeps for
the backward pass at `max_seq_len` and the micro-batch (times the sequences a row puts through the
model: DPO's chosen and rejected answer; every layer's, or with gradient checkpointing each
layer's input and one layer's), and the LM head's loss tiles
(trainers.lm_loss on CPU; TRL's fused head on a GPU). `memory_warnings` compares the trials
that run at once with this machine's available memory (a GPU trial's weights, gradients and
activations with its share of a GPU instead) and, when they do not fit, names the concurrency,
the micro-batch or the setting that would. The parameter count comes from the model's own
config, built on the meta device (no weights are read). How close the estimate comes to
measured peaks is in benchmarks/README.md ("Memory of one trial").
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.config.sweep_file import SweepConfig
from hpo.run.baseline import cache_root, cached
from trainers.recipe import Recipe
from trainers.shared import LOSS_TILE_BYTES as TILE_BYTES
from trainers.stages import STAGES

GB = 1024**3
SHAPE_VERSION = 1  # raise when ModelShape changes, so cached shapes are built again
# Bytes autograd keeps per token and layer, in units of the compute dtype's size: multiples of the hidden
# size and of the MLP's inner size (a Llama block with LoRA on every linear layer: its dropout copies,
# the attention inputs and output, the MLP's gate, up and activated products, the norms).
SAVED_PER_HIDDEN = 17
SAVED_PER_INNER = 5
BACKWARD_SHARE = 0.25  # gradients flowing back through the layers, and allocator slack, over the saved activations
LOSS_TILES = 8  # tile-sized temporaries the loss holds at once (TRL's kernel, torch fallback, backward)
GPU_TILE_BYTES = 4096 * 32768 * 2  # TRL's tile on a GPU: 4,096 tokens x 32,768 columns in bf16
CPU_PROCESS_BYTES = int(0.7 * GB)  # a trial worker's libraries, tokenizer and data on CPU
GPU_CONTEXT_BYTES = int(0.6 * GB)  # the CUDA context and kernels on a GPU
ENGINE_BYTES = int(1.5 * GB)  # the driver and embedded Ray beside the trials
ADAM_BYTES = 8  # two float32 moments per trainable parameter
GRAD_BYTES = 4


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a model: its size and the dimensions of its layers."""

    parameters: int
    linear_dims: tuple[tuple[int, int], ...]  # (in, out) of every linear layer LoRA adapts
    layers: int
    hidden: int
    inner: int
    vocabulary: int


@dataclass(frozen=True)
class Peak:
    """One trial's peak memory by part, in bytes; `device` where the model trains, `host` the process."""

    process: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    loss: int

    @property
    def device(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.loss

    @property
    def total(self) -> int:
        return self.process + self.device

    def parts(self) -> str:
        named = (("weights", self.weights), ("optimizer", self.gradients + self.optimizer))
        named += (("activations", self.activations), ("loss", self.loss))
        return ", ".join(f"{name} {gb(size)}" for name, size in named)


def gb(size: float) -> str:
    return f"{size / GB:.1f} GB"


def model_shape(ref: str) -> ModelShape | None:
    """The shape of the model `ref` names, from its config alone (a folder's config.json, a GGUF file's
    header), built on the meta device: no weights are read or converted. None for a hub id (the
    network). Kept in the cache folder by the config's content, since building it imports
    transformers (seconds on every `hpo validate`)."""
    from trainers.model_store import SMOLLM2, smollm2_gguf_path

    path = smollm2_gguf_path() if ref.lower() == SMOLLM2 else Path(ref).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        source = path / "config.json"
    elif path.is_file() and path.suffix.lower() == ".gguf":
        source = path
    else:
        return None

    def compute() -> dict:
        return dataclasses.asdict(build_shape(path))

    try:
        found, _ = cached(cache_root() / "model_shapes", shape_key(source), compute)
    except OSError:  # a cache folder that cannot be written: the shape is built each time
        found = compute()
    return ModelShape(**{**found, "linear_dims": tuple(tuple(d) for d in found["linear_dims"])})


def shape_key(source: Path) -> str:
    """A model's shape is kept by the config file's bytes (a GGUF file by its path, size and time, as its
    header alone decides the shape) and the estimate's version."""
    if source.suffix.lower() == ".gguf":
        info = source.stat()
        content = f"{source.resolve()}:{info.st_size}:{info.st_mtime_ns}".encode()
    else:
        content = source.read_bytes()
    return hashlib.sha256(content + f"shape-v{SHAPE_VERSION}".encode()).hexdigest()[:20]


def build_shape(path: Path) -> ModelShape:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if path.is_dir():
        config = AutoConfig.from_pretrained(path)
    else:
        config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    text = config.get_text_config()
    head = model.get_output_embeddings()
    linear = tuple(
        (m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head
    )
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        linear_dims=linear,
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        inner=getattr(text, "intermediate_size", 4 * text.hidden_size),
        vocabulary=text.vocab_size,
    )


def trial_peak(shape: ModelShape, recipe: Recipe, on_gpu: bool, batch_size: int | None = None) -> Peak:
    """The estimated peak of one trial process of `recipe` (at micro-batch `batch_size`, if given)."""
    training = recipe.training
    batch = batch_size or training.batch_plan(1)[0]
    width = 2 if on_gpu else 4  # bf16 on a GPU, float32 on CPU (trainers.models.training_dtype)
    full = recipe.method == "full"
    trainable = (
        shape.parameters if full else sum(recipe.hyperparameters.lora_rank * (i + o) for i, o in shape.linear_dims)
    )
    weight_width = 4 if full or not on_gpu else 2  # full rank keeps float32 master weights
    if training.load_in_4bit:
        weight_width = 1 / 2
    stage = STAGES[recipe.stage]
    if full and stage.full_rank_reference:
        weight_width += width  # the frozen reference copy, in the compute dtype
    tokens = batch * training.max_seq_len * stage.sequences_per_row
    per_layer = width * tokens * (SAVED_PER_HIDDEN * shape.hidden + SAVED_PER_INNER * shape.inner)
    if not on_gpu:
        per_layer += 4 * tokens * training.max_seq_len  # the attention mask each layer keeps on CPU
    kept_layers = per_layer * (1 if training.gradient_checkpointing else shape.layers)
    inputs = width * tokens * shape.hidden * shape.layers if training.gradient_checkpointing else 0
    tile = GPU_TILE_BYTES if on_gpu else min(TILE_BYTES, 4 * tokens * shape.vocabulary)
    return Peak(
        process=GPU_CONTEXT_BYTES if on_gpu else CPU_PROCESS_BYTES,
        weights=int(shape.parameters * weight_width),
        gradients=trainable * GRAD_BYTES,
        optimizer=trainable * ADAM_BYTES,
        activations=int((kept_layers + inputs) * (1 + BACKWARD_SHARE)),
        loss=LOSS_TILES * tile,
    )


def fitting_batch(shape: ModelShape, recipe: Recipe, on_gpu: bool, room: float) -> int | None:
    """The largest micro-batch, halving from the recipe's, whose trial fits in `room` bytes; None if not even 1."""
    batch = recipe.training.batch_plan(1)[0]
    while batch >= 1:
        peak = trial_peak(shape, recipe, on_gpu, batch)
        if (peak.device if on_gpu else peak.total) <= room:
            return batch
        batch //= 2
    return None


def at_once(config: SweepConfig, cpus: int) -> int:
    """How many trials run at the same time: the concurrency, unless the CPUs allow fewer."""
    return max(1, min(config.budget.concurrency, int(cpus // config.resources.cpu)))


def host_warning(config: SweepConfig, shape: ModelShape, available: int, cpus: int) -> str | None:
    """A line when the trials that run at once on CPU do not fit in `available` bytes of this machine."""
    recipe, running = config.recipe, at_once(config, cpus)
    peak = trial_peak(shape, recipe, on_gpu=False)
    room = available - ENGINE_BYTES
    if running * peak.total <= room:
        return None
    fits = max(0, room // peak.total)
    batch = fitting_batch(shape, recipe, False, room / running)
    fixes = [f"budget.concurrency: {fits}"] if fits >= 1 else []
    if batch and batch < recipe.training.batch_plan(1)[0]:
        fixes.append(f"training.batch_size: {batch} (the accumulation makes up the rest)")
    if not recipe.training.gradient_checkpointing:
        saved = trial_peak(shape, dataclasses.replace(recipe, training=checkpointed(recipe)), on_gpu=False)
        fixes.append(f"training.gradient_checkpointing: true ({gb(saved.total)} a trial, about a third more compute)")
    return (
        f"{config.path}: {running} trial{'s' if running > 1 else ''} at once need about {gb(running * peak.total)} "
        f"at their peak ({gb(peak.total)} each at max_seq_len {recipe.training.max_seq_len}, micro-batch "
        f"{recipe.training.batch_plan(1)[0]}: {peak.parts()}), and this machine has {gb(room)} available "
        f"beside the sweep's own processes; a trial that runs out is retried with half the micro-batch. "
        f"To fit: {' or '.join(fixes) or 'a machine with more memory'}"
    )


def gpu_warning(config: SweepConfig, shape: ModelShape, gpu_bytes: int) -> str | None:
    """A line when one trial's share of a GPU (`resources.gpu` per process) cannot hold what it trains."""
    recipe = config.recipe
    share = config.resources.gpu / config.resources.workers
    room = gpu_bytes * min(1.0, share)
    peak = trial_peak(shape, recipe, on_gpu=True)
    if peak.device + peak.process <= room:
        return None
    batch = fitting_batch(shape, recipe, True, room - peak.process)
    fixes = [f"training.batch_size: {batch}"] if batch and batch < recipe.training.batch_plan(1)[0] else []
    if not recipe.training.gradient_checkpointing:
        fixes.append("training.gradient_checkpointing: true")
    return (
        f"{config.path}: resources.gpu: each trial process needs about {gb(peak.device + peak.process)} of GPU "
        f"memory ({peak.parts()}) and gets {gb(room)}; a trial that runs out is retried with half the micro-batch. "
        f"To fit: {' or '.join(fixes) or 'a larger share of a GPU, or more processes (resources.workers)'}"
    )


def checkpointed(recipe: Recipe):
    return dataclasses.replace(recipe.training, gradient_checkpointing=True)


def memory_warnings(config: SweepConfig) -> list[str]:
    """Warnings for trials that would not fit in this machine's memory, or a GPU's (embedded Ray only: a
    cluster's nodes are not known before the sweep starts)."""
    import psutil

    from hpo.run.resources import machine_cpus

    shape = model_shape(config.recipe.model)
    if shape is None or os.environ.get("RAY_ADDRESS"):
        return []
    if config.resources.gpu:
        import torch

        if not torch.cuda.is_available():
            return []
        line = gpu_warning(config, shape, torch.cuda.get_device_properties(0).total_memory)
    else:
        line = host_warning(config, shape, psutil.virtual_memory().available, machine_cpus())
    return [line] if line else []


def describe(peak: Peak) -> dict[str, Any]:
    """The estimate's parts in GB, for a benchmark's table."""
    return {f.name: getattr(peak, f.name) / GB for f in dataclasses.fields(peak)} | {"total": peak.total / GB}
