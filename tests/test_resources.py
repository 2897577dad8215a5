"""Resources that can never be met are refused, not waited on forever.

`resources: {gpu: 1}` on a machine without a GPU passed `hpo validate` and the sweep then never
started a trial, printing Ray's autoscaler notice every minute. Now this machine's shortfall is
bad input at load (tests/test_bad_input.py runs it through the CLI), and on a Ray cluster a
sweep waits a configurable time for the autoscaler before it gives up.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hpo.config.errors import InputError
from hpo.config.sweep_file import Resources, load_sweep
from hpo.run import resources as sweep
from hpo.run.resources import machine_problems, machine_shortfall


def test_a_trial_must_fit_one_node():
    nodes = [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}]
    assert sweep.shortfall({"CPU": 4.0, "GPU": 1.0}, nodes) == ""
    assert sweep.shortfall({"CPU": 1.0, "GPU": 0.0}, nodes) == ""
    line = sweep.shortfall({"CPU": 16.0, "GPU": 1.0}, nodes)  # enough CPUs in all, but not on one node
    assert line == "each trial asks for 16 CPU and 1 GPU on one node; the most any node has is 8 CPU, 1 GPU"
    assert sweep.shortfall({"CPU": 1.0, "GPU": 1.0}, [{"CPU": 2.0}]).endswith("2 CPU, 0 GPU")


def test_this_machine_is_checked_before_anything_starts(monkeypatch):
    monkeypatch.setattr(sweep, "machine_cpus", lambda: 2)
    monkeypatch.setattr(sweep, "machine_gpus", lambda: 0)
    assert machine_shortfall(Resources(cpu=2, gpu=0)) == {}
    found = machine_shortfall(Resources(cpu=64, gpu=0.5))
    assert found["cpu"].startswith("each trial asks for 64 CPUs but this machine has 2 (lower it to at most 2")
    assert found["gpu"].startswith("each trial asks for 0.5 GPUs but this machine has none (set resources.gpu: 0")


def test_a_cluster_run_is_not_held_to_this_machine(tiny, monkeypatch):
    document = (tiny / "sweep.yaml").read_text().replace("resources:\n  cpu: 1", "resources:\n  cpu: 1\n  gpu: 1")
    (tiny / "sweep.yaml").write_text(document)
    config = load_sweep(tiny / "sweep.yaml")  # a file for a cluster loads anywhere
    monkeypatch.setattr(sweep, "machine_gpus", lambda: 0)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (line,) = machine_problems(config)
    assert line == (
        f"{tiny / 'sweep.yaml'}: resources.gpu: each trial asks for 1 GPU but this machine has none "
        "(set resources.gpu: 0, or run on a Ray cluster with GPUs: docs/cluster.md)"
    )
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # the cluster's nodes are checked when the sweep joins it
    assert machine_problems(config) == []


class Cluster:
    """Alive nodes over (fake) time: an autoscaler adds a GPU node after `grows_after` seconds."""

    def __init__(self, grows_after: float | None) -> None:
        self.now = 0.0
        self.grows_after = grows_after
        self.requests: list[list[dict]] = []

    def nodes(self) -> list[dict[str, float]]:
        grown = self.grows_after is not None and self.now >= self.grows_after
        return [{"CPU": 4.0}, *([{"CPU": 4.0, "GPU": 1.0}] if grown else [])]

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def needs_gpu(tmp_path: Path, wait_s: float):
    base = load_sweep_stub(tmp_path)
    return dataclasses.replace(base, resources=Resources(cpu=1, gpu=1, wait_s=wait_s))


def load_sweep_stub(tmp_path: Path):
    from hpo.config.sweep_file import SweepConfig

    fields = {f.name: None for f in dataclasses.fields(SweepConfig)}
    return SweepConfig(**{**fields, "path": str(tmp_path / "sweep.yaml")})


def start_cluster(monkeypatch, cluster: Cluster, address: str | None) -> None:
    monkeypatch.setattr(sweep, "alive_nodes", cluster.nodes)
    monkeypatch.setattr(sweep, "request_resources", lambda bundles: cluster.requests.append(bundles))
    if address:
        monkeypatch.setenv("RAY_ADDRESS", address)
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_an_autoscaling_cluster_gets_its_wait(tmp_path, monkeypatch):
    cluster = Cluster(grows_after=30.0)
    start_cluster(monkeypatch, cluster, "10.0.0.1:6379")
    said: list[str] = []
    sweep.require_resources(needs_gpu(tmp_path, 600), said.append, lambda: cluster.now, cluster.sleep)
    assert cluster.now == pytest.approx(30.0)
    (warning,) = said
    assert warning.startswith("warning: each trial asks for 1 CPU and 1 GPU") and "waiting up to 600 s" in warning
    assert cluster.requests == [[{"CPU": 1, "GPU": 1}], []]  # asked the autoscaler, then let the trials ask


def test_a_cluster_that_never_grows_is_given_up_on(tmp_path, monkeypatch):
    cluster = Cluster(grows_after=None)
    start_cluster(monkeypatch, cluster, "10.0.0.1:6379")
    with pytest.raises(InputError) as refused:
        sweep.require_resources(needs_gpu(tmp_path, 60), lambda line: None, lambda: cluster.now, cluster.sleep)
    (line,) = refused.value.problems
    assert line.startswith(f"{tmp_path / 'sweep.yaml'}: resources: each trial asks for 1 CPU and 1 GPU")
    assert "the cluster at RAY_ADDRESS cannot run a trial after waiting 60 s" in line
    assert cluster.now == pytest.approx(60.0, abs=sweep.RESOURCE_POLL_S)


def test_embedded_ray_does_not_wait(tmp_path, monkeypatch):
    cluster = Cluster(grows_after=1.0)
    start_cluster(monkeypatch, cluster, None)
    with pytest.raises(InputError, match="this machine \\(embedded Ray\\) cannot run a trial"):
        sweep.require_resources(needs_gpu(tmp_path, 600), lambda line: None, lambda: cluster.now, cluster.sleep)
    assert cluster.now == 0.0 and not cluster.requests
