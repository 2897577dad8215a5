"""One run over several processes with torch.distributed, as torchrun starts it (or a trial, hpo.run.ranks).

The environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) says
where this process stands; the process group is NCCL on GPUs and gloo on CPUs, and the
Trainer (through accelerate) uses it for DDP or FSDP. Rank 0 runs the probes and reports
every rung; what it decides there (stop after this rung) reaches the other ranks by a
broadcast at the same step. Without that environment every function here gives the
one-process answer, so the rung loop reads the same either way.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

# How long a collective may wait: the other ranks wait while rank 0 probes a rung (and runs the
# benchmarks at the last one), which takes minutes on a large model. A dead rank is noticed by its
# launcher (torchrun, hpo.run.ranks) at once, not by this timeout.
COLLECTIVE_TIMEOUT_S = 4 * 3600


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this process probes, reports and writes what only one process should write."""
    return rank() == 0


def device() -> torch.device:
    """This process's accelerator: cuda:LOCAL_RANK where there are GPUs, else the CPU."""
    return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")


def join() -> None:
    """Join the run's process group (before the Trainer would), so the rung loop can use it from the start."""
    if world_size() == 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))


def agree(flag: bool) -> bool:
    """Rank 0's `flag`, on every rank; every rank calls it at the same point of training."""
    if world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], device=device())
    dist.broadcast(value, src=0)
    return bool(value.item())


def barrier() -> None:
    """Wait until every rank gets here (e.g. each has written its part of a checkpoint)."""
    if world_size() > 1:
        dist.barrier()


@contextmanager
def shared_scratch(prefix: str, parent: Path | None) -> Iterator[Path]:
    """A scratch folder that every rank writes its part of a checkpoint to: rank 0 makes it, names it
    to the others and removes it at the end. The ranks of one run must share its file system."""
    if world_size() == 1:
        with tempfile.TemporaryDirectory(prefix=prefix, dir=parent) as folder:
            yield Path(folder)
        return
    join()
    name = [tempfile.mkdtemp(prefix=prefix, dir=parent) if is_main() else None]
    dist.broadcast_object_list(name, src=0)
    folder = Path(str(name[0]))
    try:
        yield folder
    except BaseException:  # the run is over for every rank (its launcher ends the others): no waiting
        if is_main():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    barrier()
    if is_main():
        shutil.rmtree(folder, ignore_errors=True)


def parallel_args(sharded: bool, checkpointing: bool) -> dict[str, Any]:
    """TrainingArguments for a run over several processes: DDP, or FSDP2 when `sharded`.

    FSDP checkpoints are sharded (each rank writes its part of the weights and optimizer
    state) and FSDP recomputes activations itself when `checkpointing`. accelerate runs FSDP
    on accelerators only; on CPUs the processes fall back to DDP, and say so.
    """
    if world_size() == 1:
        return {}
    args: dict[str, Any] = {"ddp_timeout": COLLECTIVE_TIMEOUT_S, "ddp_find_unused_parameters": False}
    if not sharded:
        return args
    if not torch.cuda.is_available():
        if is_main():
            log.warning("FSDP needs GPUs (accelerate shards on accelerators only): the CPU processes use DDP")
        return args
    fsdp_config = {
        "version": 2,
        "state_dict_type": "SHARDED_STATE_DICT",
        "activation_checkpointing": checkpointing,
        "reshard_after_forward": True,
    }
    return {**args, "fsdp": True, "fsdp_config": fsdp_config, "activation_checkpointing": False}


def is_sharded(model: Any) -> bool:
    """Whether `model`'s weights are split over the ranks (FSDP2 keeps them as DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_weights(model: Any) -> dict[str, torch.Tensor]:
    """A sharded model's whole weights, gathered on rank 0's CPU (empty elsewhere); every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
