"""The language-model loss on CPU: only the positions that have a label, in tiles of bounded size.

TRL's SFTTrainer computes its loss through a fused LM head (`trl.trainer.utils.add_fused_lm_head`):
TRL's `ChunkedLogProbFunction` projects hidden states through the head tile by tile and
recomputes each tile in the backward pass, so the full-vocabulary logits are never held. On
devices with Triton it projects only the positions whose next token has a label (the
completion, for SFT). Elsewhere, on CPU, it projects every position, prompt and padding
included, in tiles 32,768 vocabulary columns wide, and its torch fallback holds several
temporaries the size of a whole tile: at a 49,152-word vocabulary, micro-batch 8 and 320
tokens, about 2 GB at once in the backward pass. TRL takes neither choice from outside, and no
maintained library does this on CPU (Liger's fused linear cross-entropy and Apple's Cut
Cross-Entropy are GPU kernels), so on CPU the forward TRL patched is wrapped here: the same
TRL kernel, over the labelled positions only, in tiles of at most TILE_BYTES. The loss, the
per-token outputs and the gradients are TRL's to float rounding (tests/test_lm_loss.py).
"""

from __future__ import annotations

import functools
import types
from typing import Any

import torch
from trl.kernels import ChunkedLogProbFunction
from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
from trl.trainer.utils import FusedCausalLMOutput

from trainers.shared import LOSS_TILE_BYTES

TILE_BYTES = LOSS_TILE_BYTES  # one float32 tile of [tokens, vocabulary columns] on CPU
MIN_TILE_COLUMNS = 256
IGNORED = -100  # the label of a position that has no loss
# Head transforms TRL's own forward applies and this one does not: a model with any of them keeps TRL's.
HEAD_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def tile_columns(tokens: int, vocabulary: int) -> int:
    """Vocabulary columns per tile, so that one [tokens, columns] float32 tile stays within TILE_BYTES."""
    rows = max(1, min(tokens, TOKEN_CHUNK_SIZE))
    return max(MIN_TILE_COLUMNS, min(vocabulary, TILE_BYTES // (4 * rows)))


def plain_head(model: Any) -> bool:
    """Whether the model's logits are its head's projection alone (no softcapping, scaling or router loss)."""
    config = model.config.get_text_config()
    return not getattr(config, "output_router_logits", False) and all(
        getattr(config, name, None) is None for name in HEAD_TRANSFORMS
    )


def compact_lm_head(model: Any, outputs: tuple[str, ...] = ("log_probs", "entropy", "is_top1")) -> None:
    """On CPU, wrap the fused LM head TRL patched into `model` (the base model under PEFT), as this
    module's docstring says; elsewhere, and for heads TRL transforms, leave TRL's as it is.
    `outputs` are the per-token fields to compute, as in `add_fused_lm_head`."""
    if model.device.type != "cpu" or not plain_head(model):
        return
    fused = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or shift_labels is not None:
            return fused(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        return labelled_log_probs(self.get_output_embeddings(), hidden, targets, num_items_in_batch, outputs)

    model.forward = types.MethodType(forward, model)


def labelled_log_probs(
    head: torch.nn.Linear,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None,
    outputs: tuple[str, ...],
) -> FusedCausalLMOutput:
    """TRL's fused output for next-token `targets` (IGNORED where there is no loss) from `hidden`,
    projecting only the labelled positions."""
    mask = targets != IGNORED
    labelled = hidden[mask]
    per_token = ChunkedLogProbFunction.apply(
        labelled,
        head.weight,
        head.bias,
        targets[mask],
        1.0,  # temperature
        tile_columns(labelled.shape[0], head.weight.shape[0]),
        None,  # no softcapping (plain_head)
        1.0,  # logit scale
        outputs,
    )
    # masked_scatter keeps a batch without a label connected to the model: its loss is a differentiable zero
    log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = (
        None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in per_token
    )
    count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    return FusedCausalLMOutput(
        loss=-log_probs.sum() / count,
        log_probs=log_probs,
        entropy=entropy,
        log_sum_sq_probs=log_sum_sq_probs,
        mean_logits=mean_logits,
        is_top1=is_top1,
        label_mask=mask,
    )
