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
from trainers.probes import ProbeSet, load_probes, run_probes
from trainers.recipe import Recipe
from trainers.scorers import source_digest
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
    probe_files += [corpus.path for corpus in recipe.general.corpora]
    digest = hashlib.sha256(model_fingerprint(recipe.model).encode())
    for path in probe_files:
        digest.update(Path(path).read_bytes() if path else b"-")
    for adapter in recipe.start_adapters:  # an adapter is small: its bytes are its identity
        for file in sorted(Path(adapter).glob("adapter_*")):
            digest.update(file.read_bytes())
    settings = [dataclasses.asdict(recipe.probes), recipe.training.max_seq_len, list(recipe.labels), recipe.stage]
    settings += [recipe.metric.scorer, recipe.metric.pattern, [c.name for c in recipe.general.corpora]]
    if source := source_digest(recipe.metric):  # a user's scorer: a cached baseline is for this version of it
        settings.append(source)
    if recipe.system_prompt is not None:
        settings.append({"system_prompt": recipe.system_prompt})
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def cacheable(recipe: Recipe) -> bool:
    """Whether the baseline depends only on the model, files and settings: not on a reward, nor on a scorer
    that does not declare itself deterministic (code or a service, whose behaviour the cache cannot see)."""
    return STAGES[recipe.stage].baseline_cacheable(recipe)


def chance(recipe: Recipe, probes: ProbeSet) -> dict:
    """For a label task: what guessing scores on the eval split (trainers.scorers.chance_scores)."""
    return STAGES[recipe.stage].chance(recipe, probes)


def measure_baseline(recipe: Recipe) -> dict:
    """Baseline metrics (from the cache when the same model and probes were scored before).

    A label task's baseline also holds the majority-class and uniform-chance scores on the eval
    split (`domain_majority`, `domain_uniform`): what a recipe must beat besides the base model.
    """
    cached = cache_dir() / f"{baseline_key(recipe)}.json"
    if cacheable(recipe) and cached.is_file():
        baseline = json.loads(cached.read_text())
        log.info("baseline: reused %s", cached)
    else:
        model, tokenizer = load_base(recipe.model, recipe.start_adapters)
        probes = load_probes(recipe, STAGES[recipe.stage].domain_probe)
        metrics, predictions = run_probes(model, tokenizer, probes)
        baseline = {"metrics": metrics, "predictions": predictions, "model": recipe.model}
        if guess := chance(recipe, probes):
            metrics.update(domain_majority=guess["majority"], domain_uniform=guess["uniform"])
            baseline["chance"] = guess
        if recipe.start_adapters:
            baseline["start_adapters"] = list(recipe.start_adapters)
        if cacheable(recipe):
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_json(cached, baseline)
    return baseline

