"""Resources a trial asks for that no node can give: refused, not waited on forever.

Every trial's `resources` must fit one node of the Ray cluster the sweep runs on. On embedded
Ray the machine will not grow, so a shortfall is bad input: `machine_problems` compares the
request with this machine before anything starts (`hpo validate` warns, as the same file may
be meant for a cluster; `hpo sweep` refuses), and `require_resources` with what Ray sees once
it runs. On a cluster (`RAY_ADDRESS`) the autoscaler may add a node: the sweep asks it for one
and waits `resources.wait_s` before it gives up. Without this, a sweep that could never start
a trial waited forever while Ray printed its autoscaler notice every minute.
"""

from __future__ import annotations

import logging
import os
import time

import ray
from ray.autoscaler.sdk import request_resources

from hpo.config.errors import InputError
from hpo.config.sweep_file import Resources, SweepConfig

log = logging.getLogger(__name__)
RESOURCE_POLL_S = 5.0  # between two looks at a cluster that cannot run a trial yet


def shortfall(request: dict[str, float], nodes: list[dict[str, float]]) -> str:
    """Why no node can run one trial (every trial's resources must fit one node), or empty when one can."""
    if any(all(node.get(name, 0.0) >= amount for name, amount in request.items()) for node in nodes):
        return ""
    wanted = " and ".join(f"{amount:g} {name}" for name, amount in request.items() if amount)
    largest = ", ".join(
        f"{max((node.get(name, 0.0) for node in nodes), default=0.0):g} {name}" for name in request if request[name]
    )
    return f"each trial asks for {wanted} on one node; the most any node has is {largest}"


def alive_nodes() -> list[dict[str, float]]:
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def require_resources(config: SweepConfig, say=log.warning, clock=time.monotonic, sleep=time.sleep) -> None:
    """Refuse (InputError) a sweep whose trials no node can run: at once on embedded Ray, after
    `resources.wait_s` on a cluster, whose autoscaler is asked for such a node meanwhile."""
    request = {"CPU": config.resources.cpu, "GPU": config.resources.gpu}
    cluster = bool(os.environ.get("RAY_ADDRESS"))
    deadline = clock() + config.resources.wait_s
    asked = False
    while problem := shortfall(request, alive_nodes()):
        if not cluster or clock() >= deadline:
            raise InputError([refusal(config, problem, cluster)])
        if not asked:
            wait = f"waiting up to {config.resources.wait_s:g} s for the cluster to add a node (resources.wait_s)"
            say(f"warning: {problem}; {wait}")
            request_resources(bundles=[{name: amount for name, amount in request.items() if amount}])
            asked = True
        sleep(RESOURCE_POLL_S)
    if asked:
        request_resources(bundles=[])  # the trials' own requests keep the node from here on


def refusal(config: SweepConfig, problem: str, cluster: bool) -> str:
    where = "the cluster at RAY_ADDRESS" if cluster else "this machine (embedded Ray)"
    waited = f" after waiting {config.resources.wait_s:g} s" if cluster else ""
    return f"{config.path}: resources: {problem}: {where} cannot run a trial{waited} (lower resources, or add nodes)"


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity, as Ray counts them on Linux)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_gpus() -> int:
    import torch  # only asked when a trial wants a GPU

    return torch.cuda.device_count()


def machine_shortfall(resources: Resources) -> dict[str, str]:
    """What one trial asks for that this machine does not have, by key (embedded Ray cannot grow)."""
    found = {}
    cpus = machine_cpus()
    if resources.cpu > cpus:
        found["cpu"] = (
            f"each trial asks for {resources.cpu:g} CPU{plural(resources.cpu)} but this machine has {cpus} "
            f"(lower it to at most {cpus}, or run on a Ray cluster: docs/cluster.md)"
        )
    gpus = machine_gpus() if resources.gpu > 0 else 0
    if resources.gpu > gpus:
        have = f"{gpus}" if gpus else "none"
        found["gpu"] = (
            f"each trial asks for {resources.gpu:g} GPU{plural(resources.gpu)} but this machine has {have} "
            f"(set resources.gpu: {gpus}, or run on a Ray cluster with GPUs: docs/cluster.md)"
        )
    return found


def plural(count: float) -> str:
    return "" if count == 1 else "s"


def machine_problems(config: SweepConfig) -> list[str]:
    """One line per resource this machine cannot give a trial, when its sweeps run on embedded Ray here."""
    if os.environ.get("RAY_ADDRESS"):
        return []
    return [f"{config.path}: resources.{key}: {line}" for key, line in machine_shortfall(config.resources).items()]
