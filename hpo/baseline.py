"""The base model scored once on the same probes as every trial, before any trial runs.

Cached by (model, start adapter, stage, probe data, probe settings) so that repeated
sweeps over the same model and probes pay for it once; each run directory keeps its own
baseline.json. A stage whose probe depends on more than files (RFT's reward is code or a
service, whose behaviour the cache cannot see) is never cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

from hpo.rundir import write_json
from trainers.model_store import resolve_model
from trainers.models import load_base
from trainers.probes import load_probes, run_probes
from trainers.recipe import Recipe
from trainers.stages import STAGES

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("FORGE_HPO_CACHE", Path.home() / ".cache" / "forge-hpo")) / "baselines"


def model_fingerprint(ref: str) -> str:
    """Local folders by their files' names, sizes and times; hub ids by name."""
    folder = Path(resolve_model(ref))
    if not folder.is_dir():
        return ref
    stats = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in folder.iterdir() if p.is_file())
    return json.dumps([str(folder), stats])


def baseline_key(recipe: Recipe) -> str:
    probe_files = [recipe.data.domain_eval, recipe.data.general_probe, recipe.data.instruction_probe]
    digest = hashlib.sha256(model_fingerprint(recipe.model).encode())
    for path in probe_files:
        digest.update(Path(path).read_bytes() if path else b"-")
    for adapter in recipe.start_adapters:  # an adapter is small: its bytes are its identity
        for file in sorted(Path(adapter).glob("adapter_*")):
            digest.update(file.read_bytes())
    settings = [dataclasses.asdict(recipe.probes), recipe.training.max_seq_len, list(recipe.labels), recipe.stage]
    if recipe.system_prompt is not None:
        settings.append({"system_prompt": recipe.system_prompt})
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def measure_baseline(recipe: Recipe) -> dict:
    """Baseline metrics (from the cache when the same model and probes were scored before)."""
    cached = cache_dir() / f"{baseline_key(recipe)}.json"
    cacheable = STAGES[recipe.stage].baseline_cacheable
    if cacheable and cached.is_file():
        baseline = json.loads(cached.read_text())
        log.info("baseline: reused %s", cached)
    else:
        model, tokenizer = load_base(recipe.model, recipe.start_adapters)
        metrics, predictions = run_probes(model, tokenizer, load_probes(recipe))
        baseline = {"metrics": metrics, "predictions": predictions, "model": recipe.model}
        if recipe.start_adapters:
            baseline["start_adapters"] = list(recipe.start_adapters)
        if cacheable:
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_json(cached, baseline)
    return baseline

