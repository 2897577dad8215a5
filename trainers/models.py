"""Loading the base model and tokenizer the same way for the baseline, trials and exports.

Each process of a run loads onto its own accelerator (trainers.distributed.device). A
QLoRA run loads the frozen base in 4-bit NF4 through bitsandbytes (GPU only), computing
in bf16; the LoRA adapter on top trains in full precision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainers.distributed import device
from trainers.model_store import ModelError, check_chat_template, resolve_model

log = logging.getLogger(__name__)


def training_dtype() -> torch.dtype:
    """bf16 on a GPU that supports it, float32 elsewhere (CPU bf16 matmuls are slow here)."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def four_bit_options() -> dict[str, Any]:
    """from_pretrained arguments for a 4-bit NF4 base on this process's GPU (QLoRA)."""
    if not torch.cuda.is_available():
        raise ModelError("training.load_in_4bit needs a GPU (bitsandbytes 4-bit weights); give the trials one")
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": quantization, "device_map": {"": device().index}}


def load_base(
    ref: str, start_adapters: Sequence[str] = (), load_in_4bit: bool = False, master_weights: bool = False
) -> tuple[Any, Any]:
    """The base model (on this process's GPU if there is one) and its tokenizer, with a pad token.

    `start_adapters` are LoRA adapters (earlier stages' best) merged into the weights in
    order, so the model starts, and is measured, where those stages ended. `load_in_4bit`
    quantizes the base (QLoRA). `master_weights` keeps float32 weights for a run that trains
    every weight: bf16 autocast computes, and updates far smaller than a weight (a learning
    rate of 1e-5) are not rounded away as they would be in bf16 weights.
    """
    folder = resolve_model(ref)
    options = four_bit_options() if load_in_4bit else {}
    dtype = torch.float32 if master_weights else training_dtype()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **options)
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
    if torch.cuda.is_available() and not load_in_4bit:  # a quantized model is placed as it loads
        model = model.to(device())
    return model, tokenizer


def load_copy(folder: Path) -> Any:
    """A saved model loaded whole onto this process's accelerator (e.g. to probe what FSDP holds in shards)."""
    return AutoModelForCausalLM.from_pretrained(folder, dtype=training_dtype()).to(device())
