"""The base model scored once on the same probes as every trial, before any trial runs.

Cached by (model, start adapter, stage, probe data, probe settings) so that repeated
sweeps over the same model and probes pay for it once; each run directory keeps its own
baseline.json. A stage whose probe depends on more than files (RFT's reward is code or a
service, whose behaviour the cache cannot see) is never cached.

The base model's held-out figures (hpo.judge.evaluate: the test split's answers and scores, each
benchmark's per-example scores) are cached the same way, one entry per part, keyed by the
model, the part's files and the settings its scores depend on (`held_out_key`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.results.rundir import write_json
from hpo.run.timing import BASELINE, note, phase
from trainers.harness import benchmark_files
from trainers.model_store import resolve_model
from trainers.recipe import Recipe
from trainers.scorers import source_digest
from trainers.stages import STAGES

if TYPE_CHECKING:
    from trainers.probes import ProbeSet

log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("FORGE_HPO_CACHE", Path.home() / ".cache" / "forge-hpo"))


def cache_dir() -> Path:
    return cache_root() / "baselines"


def held_out_dir() -> Path:
    return cache_root() / "held_out"


def model_fingerprint(ref: str) -> str:
    """Local folders by their files' names, sizes and times; hub ids by name."""
    folder = Path(resolve_model(ref))
    if not folder.is_dir():
        return ref
    stats = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in folder.iterdir() if p.is_file())
    return json.dumps([str(folder), stats])


def cache_key(recipe: Recipe, files: list[str | Path | None], settings: list[Any]) -> str:
    """A key for figures of the recipe's starting model (the model and its start adapters) on `files`
    (their bytes; None for a file not given) with `settings` (JSON values)."""
    digest = hashlib.sha256(model_fingerprint(recipe.model).encode())
    for path in files:
        digest.update(Path(path).read_bytes() if path else b"-")
    for adapter in recipe.start_adapters:  # an adapter is small: its bytes are its identity
        for file in sorted(Path(adapter).glob("adapter_*")):
            digest.update(file.read_bytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def baseline_key(recipe: Recipe) -> str:
    probe_files = [recipe.data.domain_eval, recipe.data.general_probe, recipe.data.instruction_probe]
    probe_files += [corpus.path for corpus in recipe.general.corpora]
    settings = [dataclasses.asdict(recipe.probes), recipe.training.max_seq_len, list(recipe.labels), recipe.stage]
    settings += [recipe.metric.scorer, recipe.metric.pattern, [c.name for c in recipe.general.corpora]]
    if source := source_digest(recipe.metric):  # a user's scorer: a cached baseline is for this version of it
        settings.append(source)
    if recipe.system_prompt is not None:
        settings.append({"system_prompt": recipe.system_prompt})
    return cache_key(recipe, probe_files, settings)


def held_out_key(recipe: Recipe, part: str) -> str | None:
    """The cache key of the base model's figures on one held-out part: "domain" (the test split; None
    where its scores depend on code, see `cacheable`) or "benchmark_<task>"."""
    if part == "domain":
        if not cacheable(recipe):
            return None
        settings = [part, recipe.stage, dataclasses.asdict(recipe.metric), list(recipe.labels)]
        settings += [recipe.probes.max_new_tokens, recipe.training.max_seq_len, recipe.system_prompt]
        return cache_key(recipe, [recipe.data.domain_test], settings)
    (benchmark,) = [b for b in recipe.general.benchmarks if f"benchmark_{b.task}" == part]
    system_prompt = recipe.system_prompt if benchmark.chat_template else None
    settings = [part, dataclasses.asdict(benchmark), version("lm_eval"), system_prompt]
    return cache_key(recipe, benchmark_files(benchmark), settings)


def cached(folder: Path, key: str | None, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """`compute()`'s document, read from `folder/<key>.json` when it was computed before (and written
    there when not); with no key, computed every time. The second value says whether it was read."""
    path = folder / f"{key}.json"
    if key is not None and path.is_file():
        return json.loads(path.read_text()), True
    document = compute()
    if key is not None:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(path, document)
    return document, False


def cacheable(recipe: Recipe) -> bool:
    """Whether the baseline depends only on the model, files and settings: not on a reward, nor on a scorer
    that does not declare itself deterministic (code or a service, whose behaviour the cache cannot see)."""
    return STAGES[recipe.stage].baseline_cacheable(recipe)


def chance(recipe: Recipe, probes: ProbeSet) -> dict:
    """For a label task: what guessing scores on the eval split (trainers.scorers.chance_scores)."""
    return STAGES[recipe.stage].chance(recipe, probes)


@phase(BASELINE)
def measure_baseline(recipe: Recipe) -> dict:
    """Baseline metrics (from the cache when the same model and probes were scored before).

    A label task's baseline also holds the majority-class and uniform-chance scores on the eval
    split (`domain_majority`, `domain_uniform`): what a recipe must beat besides the base model.
    """
    key = baseline_key(recipe) if cacheable(recipe) else None
    baseline, reused = cached(cache_dir(), key, lambda: score_baseline(recipe))
    if reused:
        log.info("baseline: reused %s", cache_dir() / f"{key}.json")
        note(BASELINE, "reused from the cache")
    return baseline


def score_baseline(recipe: Recipe) -> dict:
    from trainers.models import load_base  # imports torch and PEFT (seconds): only when the cache has no baseline
    from trainers.probes import load_probes, run_probes

    model, tokenizer = load_base(recipe.model, recipe.start_adapters)
    probes = load_probes(recipe, STAGES[recipe.stage].domain_probe)
    metrics, predictions = run_probes(model, tokenizer, probes)
    baseline = {"metrics": metrics, "predictions": predictions, "model": recipe.model}
    if guess := chance(recipe, probes):
        metrics.update(domain_majority=guess["majority"], domain_uniform=guess["uniform"])
        baseline["chance"] = guess
    if recipe.start_adapters:
        baseline["start_adapters"] = list(recipe.start_adapters)
    return baseline
