"""hpo.run.memory: a trial's peak memory estimated from the model's shape and the recipe, and the warning
when the trials that run at once do not fit."""

from __future__ import annotations

import dataclasses

from transformers import AutoModelForCausalLM

from hpo.config.sweep_file import Budget, Resources, load_sweep
from hpo.run.memory import GB, LOSS_TILES, ModelShape, gpu_warning, host_warning, model_shape, trial_peak

# SmolLM2-135M's shape: 30 Llama blocks, hidden 576, MLP 1536, 9 heads over 3 key-value heads, 49,152 words
BLOCK = ((576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576))
SMOLLM2 = ModelShape(134_515_008, BLOCK * 30, layers=30, hidden=576, inner=1536, vocabulary=49152)


def sweep(tiny, seq_len=320, batch=8, concurrency=2, checkpointing=False, gpu=0.0):
    config = load_sweep(tiny / "sweep.yaml")
    training = dataclasses.replace(
        config.recipe.training, max_seq_len=seq_len, batch_size=batch, gradient_checkpointing=checkpointing
    )
    return dataclasses.replace(
        config,
        recipe=dataclasses.replace(config.recipe, training=training),
        budget=Budget(trials=4, concurrency=concurrency),
        resources=Resources(cpu=1, gpu=gpu),
    )


def test_the_shape_comes_from_the_config_alone_and_counts_every_parameter(tiny_source):
    shape = model_shape(str(tiny_source / "model"))
    model = AutoModelForCausalLM.from_pretrained(tiny_source / "model")
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    assert len(shape.linear_dims) == 7 * shape.layers == 7 * model.config.num_hidden_layers
    assert (shape.hidden, shape.vocabulary) == (model.config.hidden_size, model.config.vocab_size)
    assert model_shape("owner/some-hub-model") is None  # it would need the network


def test_activations_grow_with_tokens_and_checkpointing_keeps_about_one_layer(tiny):
    small, large = (trial_peak(SMOLLM2, sweep(tiny, batch=b).recipe, on_gpu=False) for b in (4, 8))
    assert 1.9 < large.activations / small.activations < 2.1
    assert large.weights == small.weights == SMOLLM2.parameters * 4  # float32 on CPU
    kept = trial_peak(SMOLLM2, sweep(tiny, checkpointing=True).recipe, on_gpu=False)
    assert kept.activations < large.activations / 10 and kept.total < 3 * GB < large.total
    assert large.loss <= LOSS_TILES * 32 * 1024**2  # the CPU loss's tiles (trainers.lm_loss)
    lora = sweep(tiny).recipe.hyperparameters.lora_rank
    assert large.gradients == 4 * lora * sum(i + o for i, o in SMOLLM2.linear_dims)  # the adapter alone trains


def test_trials_that_do_not_fit_are_told_the_concurrency_batch_or_setting_that_would(tiny):
    config = sweep(tiny, concurrency=3)
    line = host_warning(config, SMOLLM2, available=int(12 * GB), cpus=4)
    assert line.startswith(f"{config.path}: 3 trials at once need about")
    assert "at max_seq_len 320, micro-batch 8" in line and "activations" in line
    assert "To fit: budget.concurrency: 1 or training.batch_size: 2" in line
    assert "training.gradient_checkpointing: true" in line
    assert host_warning(config, SMOLLM2, available=int(12 * GB), cpus=1) is None  # the 2 cores run one at a time
    assert "To fit: training.batch_size: " in host_warning(config, SMOLLM2, available=int(6 * GB), cpus=1)
    assert host_warning(config, SMOLLM2, available=int(64 * GB), cpus=4) is None
    assert host_warning(sweep(tiny, concurrency=3, checkpointing=True), SMOLLM2, int(12 * GB), cpus=4) is None


def test_a_gpu_share_too_small_for_a_trial_is_told_the_batch_that_fits(tiny):
    config = sweep(tiny, seq_len=1024, batch=16, gpu=0.25)
    line = gpu_warning(config, SMOLLM2, gpu_bytes=int(24 * GB))
    assert "resources.gpu: each trial process needs about" in line and "gets 6.0 GB" in line
    assert "To fit: training.batch_size: " in line
    assert gpu_warning(sweep(tiny, gpu=1.0), SMOLLM2, gpu_bytes=int(80 * GB)) is None


def test_a_dpo_row_is_two_sequences_and_full_rank_dpo_keeps_a_reference_copy(tiny):
    sft = sweep(tiny).recipe
    dpo = dataclasses.replace(sft, stage="dpo")
    lora_sft, lora_dpo = (trial_peak(SMOLLM2, recipe, on_gpu=True) for recipe in (sft, dpo))
    assert 1.9 < lora_dpo.activations / lora_sft.activations < 2.1 and lora_dpo.weights == lora_sft.weights
    full_sft, full_dpo = (trial_peak(SMOLLM2, dataclasses.replace(r, method="full"), on_gpu=True) for r in (sft, dpo))
    assert full_dpo.weights == full_sft.weights + 2 * SMOLLM2.parameters  # a bf16 copy beside float32 masters
