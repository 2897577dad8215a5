"""Loading the base model and tokenizer the same way for the baseline, trials and exports."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainers.model_store import ModelError, check_chat_template, resolve_model

log = logging.getLogger(__name__)


def training_dtype() -> torch.dtype:
    """bf16 on a GPU that supports it, float32 elsewhere (CPU bf16 matmuls are slow here)."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_base(ref: str, start_adapters: Sequence[str] = ()) -> tuple[Any, Any]:
    """The base model (on the GPU if there is one) and its tokenizer, with a pad token.

    `start_adapters` are LoRA adapters (earlier stages' best) merged into the weights in
    order, so the model starts, and is measured, where those stages ended.
    """
    folder = resolve_model(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=training_dtype())
    except (OSError, ValueError) as err:
        raise ModelError(f"'{ref}' could not be loaded ({str(err).splitlines()[0]}); check the path or id") from err
    check_chat_template(tokenizer, repr(ref))  # the CLI puts it after "FILE: model: "
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        # A pad token equal to EOS would be masked out of the labels and the model would
        # never learn to stop; fall back to the unknown token, else a new one.
        if tokenizer.unk_token is not None and tokenizer.unk_token != tokenizer.eos_token:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            model.resize_token_embeddings(len(tokenizer))
    for adapter in start_adapters:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, tokenizer
