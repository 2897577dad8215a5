"""Rung checkpoints: complete trainer states that a trial resumes from and an export loads.

A rung's checkpoint is the Hugging Face Trainer's own (weights, optimizer.pt, scheduler.pt,
rng_state.pth, trainer_state.json) plus the rung's metrics.json and predictions.json. A run
over several processes adds each rank's RNG state (rng_state_<rank>.pth); under FSDP the
weights and optimizer state are sharded (pytorch_model_fsdp_0/, optimizer_0/), with the
whole weights beside them for an export.
`complete.json` is written last and lists every file with its size: a folder without it,
or whose files differ from it (a copy cut short), is never resumed from or exported.
Only the weights leave a checkpoint (`copy_weights`); the resume-only files stay behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

MARKER = "complete.json"
METRICS = "metrics.json"
# What only resuming needs; an exported adapter or model is the rest.
RESUME_ONLY = (
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    "training_args.bin",
    "entropy_ctrl_state.json",
    "pytorch_model_fsdp_*",  # FSDP's sharded weights and optimizer state: every rank's part
    "optimizer_*",
    MARKER,
)


def mark_complete(folder: Path) -> None:
    """Write the marker listing every file of `folder` and its size; call it last."""
    files = {
        str(path.relative_to(folder)): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MARKER
    }
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps({"files": files}, indent=1))
    tmp.replace(folder / MARKER)


def is_complete(folder: Path) -> bool:
    """Whether `folder` holds its marker and every file the marker lists, at its size."""
    try:
        files = json.loads((folder / MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def checkpoint_step(folder: Path) -> int | None:
    """The training step a complete checkpoint was saved at, else None."""
    if not is_complete(folder):
        return None
    return int(json.loads((folder / METRICS).read_text())["step"])


def newest_complete(candidates: Iterable[Path], at_most: int | None = None) -> Path | None:
    """The complete checkpoint with the highest step (no higher than `at_most`), if any."""
    steps = {folder: checkpoint_step(folder) for folder in candidates}
    usable = [(step, str(folder), folder) for folder, step in steps.items() if step is not None]
    if at_most is not None:
        usable = [entry for entry in usable if entry[0] <= at_most]
    return max(usable)[2] if usable else None


def resume_only(name: str) -> bool:
    return any(Path(name).match(pattern) for pattern in RESUME_ONLY)


def copy_weights(checkpoint: Path, target: Path) -> None:
    """Copy the loadable part of a checkpoint (adapter or model, tokenizer, metrics) to `target`.

    The copy goes to a temporary folder first and replaces `target` whole, so a reader
    never sees half of it.
    """
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint, tmp, ignore=lambda folder, names: [n for n in names if resume_only(n)])
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
