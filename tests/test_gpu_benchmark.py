"""benchmarks/gpu_trainer.py at its tiny size on CPU: the same path as on a GPU, and its FLOP count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_trainer import LARGE, Size, count_weights, flops_per_token

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "gpu_trainer.py"


def test_the_tiny_benchmark_trains_both_methods_and_reports_each_figure(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| lora |" in done.stdout and "| full |" in done.stdout
    results = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    for result in results.values():
        assert result["steps"] == 6 and result["tokens_per_s_per_gpu"] > 0 and result["probe_s_per_rung"] > 0
        assert result["mfu"] is None and result["peak_memory_gib"] is None  # no GPU: neither is measured
    assert results["full"]["model_tflops_per_gpu"] / results["full"]["tokens_per_s_per_gpu"] > (
        results["lora"]["model_tflops_per_gpu"] / results["lora"]["tokens_per_s_per_gpu"]
    )


def test_the_large_model_is_about_a_billion_weights_and_its_flops_follow_the_stated_formula():
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=LARGE.vocab,
        hidden_size=LARGE.hidden,
        intermediate_size=LARGE.intermediate,
        num_hidden_layers=LARGE.layers,
        num_attention_heads=LARGE.heads,
        num_key_value_heads=LARGE.kv_heads,
    )
    weights = count_weights(config)
    assert weights == pytest.approx(1.03e9, rel=0.02)  # 22 layers of 44M matmul weights and a 66M LM head
    size = Size(**{**LARGE.__dict__, "layers": 2, "hidden": 8, "seq_len": 10})
    assert flops_per_token(1000, size, "full") == 6 * 1000 + 12 * 2 * 8 * 10
    assert flops_per_token(1000, size, "lora") == 4 * 1000 + 12 * 2 * 8 * 10
