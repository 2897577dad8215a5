"""Where Ray places trials, as the sweep file asks: fractions of a GPU pack trials onto one GPU, a
multi-process trial holds whole GPUs on one node.

The machine has no GPU: Ray is started with logical ones (`num_gpus`), which it schedules
and hands out (CUDA_VISIBLE_DEVICES) exactly as real ones, so what it reports is what a
GPU node would get.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import ray
import yaml
from ray import cloudpickle, tune

from hpo.config.sweep_file import Resources, load_sweep
from hpo.run.sweep import trial_resources

WAIT_S = 120.0  # how long a trial waits for the others it should run beside


@pytest.fixture
def ray_with_gpus():
    # the trial function below travels by value: Ray's workers cannot import this test module
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def placement(config: dict) -> None:
    """What Ray gave this trial, and how many trials ran beside it: each trial checks in, then waits
    until `together` have (or the wait runs out), so packed trials must all run at once."""
    context = ray.get_runtime_context()
    folder = Path(config["folder"])
    (folder / context.get_actor_id()).touch()
    started = time.time()
    while len(list(folder.iterdir())) < config["together"] and time.time() - started < WAIT_S:
        time.sleep(0.1)
    tune.report(
        {
            "assigned": context.get_assigned_resources(),
            "gpu_ids": sorted(str(gpu) for gpu in ray.get_gpu_ids()),
            "beside": len(list(folder.iterdir())),
            "started": started,
            "ended": time.time(),
        }
    )


def place(resources: Resources, trials: int, together: int, folder: Path) -> list[dict]:
    folder.mkdir()
    tuner = tune.Tuner(
        tune.with_resources(placement, trial_resources(resources)),
        param_space={"folder": str(folder), "together": together},
        tune_config=tune.TuneConfig(num_samples=trials),
        run_config=tune.RunConfig(verbose=0),
    )
    return [result.metrics for result in tuner.fit()]


def test_fractional_gpus_pack_trials_and_multi_process_trials_hold_whole_gpus(ray_with_gpus, tmp_path):
    quarter = place(Resources(cpu=0.5, gpu=0.25), trials=8, together=8, folder=tmp_path / "quarter")
    assert all(r["assigned"] == {"CPU": 0.5, "GPU": 0.25} for r in quarter)
    assert all(r["beside"] == 8 for r in quarter)  # four to a GPU, on both GPUs at once
    assert sorted(gpu for r in quarter for gpu in r["gpu_ids"]) == ["0"] * 4 + ["1"] * 4

    whole = place(Resources(cpu=2, gpu=2, workers=2), trials=2, together=1, folder=tmp_path / "whole")
    assert all(r["assigned"] == {"CPU": 2.0, "GPU": 2.0} and r["gpu_ids"] == ["0", "1"] for r in whole)
    first, second = sorted(whole, key=lambda r: r["started"])
    assert first["ended"] <= second["started"]  # the node has two GPUs: one such trial at a time


@pytest.mark.parametrize("name", ["llama8b_lora", "llama8b_full_fsdp"])
def test_cluster_yaml_has_a_node_for_each_big_example_and_mounts_its_output_dir(name):
    root = Path(__file__).parent.parent
    cluster = yaml.safe_load((root / "cluster.yaml").read_text())
    config = load_sweep(root / "examples" / f"{name}.yaml")
    nodes = [kind["resources"] for kind in cluster["available_node_types"].values()]
    fitting = [n for n in nodes if n.get("GPU", 0) >= config.resources.gpu and n["CPU"] >= config.resources.cpu]
    assert fitting, f"no node type of cluster.yaml holds a trial of {name}"
    mount = next(line for line in cluster["setup_commands"] if "mount -t nfs4" in line)
    assert config.output_dir.startswith(mount.split()[-1])  # run directories on the storage every node mounts
