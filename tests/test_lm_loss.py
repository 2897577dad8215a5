"""trainers.lm_loss: the CPU loss over labelled positions only gives TRL's loss, outputs and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
from trl.trainer.utils import add_fused_lm_head

from trainers.lm_loss import MIN_TILE_COLUMNS, TILE_BYTES, compact_lm_head, tile_columns

OUTPUTS = ("log_probs", "entropy", "is_top1")


@pytest.fixture(scope="module")
def model():
    """A small random Llama: the loss path, not what the model knows, is under test."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    return LlamaForCausalLM(config)


def batch(vocabulary: int, rows: int = 3, length: int = 24):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocabulary, (rows, length), generator=generator)
    labels = ids.clone()
    labels[:, :10] = -100  # the prompt
    labels[1, 18:] = -100  # padding
    labels[2] = -100  # a row whose completion was truncated away
    return ids, labels


def fused_step(model, compact: bool, ids, labels, full_rank: bool):
    model = copy.deepcopy(model)
    model.requires_grad_(False)
    trained = [model.lm_head.weight] if full_rank else [model.model.layers[0].mlp.up_proj.weight]
    for parameter in trained:
        parameter.requires_grad_(True)
    add_fused_lm_head(model, outputs=OUTPUTS)
    if compact:
        compact_lm_head(model, OUTPUTS)
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    return out, [p.grad for p in trained]


@pytest.mark.parametrize("full_rank", [False, True])
def test_the_labelled_positions_alone_give_trls_loss_outputs_and_gradients(model, full_rank, monkeypatch):
    monkeypatch.setattr("trainers.lm_loss.TILE_BYTES", 4 * 16 * MIN_TILE_COLUMNS)  # the vocabulary in two tiles
    ids, labels = batch(model.config.vocab_size)
    trl, trl_grads = fused_step(model, False, ids, labels, full_rank)
    ours, our_grads = fused_step(model, True, ids, labels, full_rank)
    assert torch.allclose(ours.loss, trl.loss, atol=1e-6, rtol=1e-5)
    for name in OUTPUTS:
        assert torch.allclose(getattr(ours, name).float(), getattr(trl, name).float(), atol=1e-5), name
    assert torch.equal(ours.label_mask, trl.label_mask)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(our_grads, trl_grads, strict=True))


def test_a_batch_without_a_label_is_a_differentiable_zero(model):
    ids, labels = batch(model.config.vocab_size)
    out, grads = fused_step(model, True, ids, torch.full_like(labels, -100), full_rank=False)
    assert out.loss.item() == 0.0 and torch.count_nonzero(grads[0]) == 0


def test_tiles_stay_within_the_budget(monkeypatch):
    assert tile_columns(2560, 49152) * 2560 * 4 <= TILE_BYTES
    assert tile_columns(10**6, 49152) * TOKEN_CHUNK_SIZE * 4 <= TILE_BYTES  # TRL's kernel takes that many tokens a tile
    assert tile_columns(3, 49152) == 49152  # a few tokens: the whole vocabulary in one tile
    monkeypatch.setattr("trainers.lm_loss.TILE_BYTES", 1024)
    assert tile_columns(2560, 49152) == MIN_TILE_COLUMNS  # never narrower than that
