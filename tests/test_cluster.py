"""A real multi-node Ray cluster on this machine: a head and a worker node on loopback,
a sweep submitted with `ray job submit`, trials spread over both nodes."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

pytest.importorskip("ray.dashboard", reason="`ray job submit` needs ray[default]")
RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cluster_processes(temp_dir: str) -> list[int]:
    # -ww: whole command lines whatever COLUMNS says (a cut line hides the temp dir).
    listing = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
    return [int(line.split()[0]) for line in listing[1:] if temp_dir in line and "ps -eo" not in line]


def stop_cluster(temp_dir: str) -> None:
    """Only this test's Ray processes: `ray stop` would also end any other Ray on the machine."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in cluster_processes(temp_dir):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


def node_flags() -> list[str]:
    """Two nodes on one machine must not share the per-node agent ports (defaults collide)."""
    ports = (
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    )
    return ["--num-cpus=1", "--disable-usage-stats", *(f"--{name}={free_port()}" for name in ports)]


@pytest.fixture
def cluster():
    # Unix socket paths under the temp dir must stay short, so not pytest's tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # A loopback-only test cluster. Its trial workers run at normal priority: at Ray's default
    # (nice 15) any other busy process on the machine starves them and the job outlasts its wait.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0"}
    gcs, dashboard = free_port(), free_port()
    head = [str(RAY), "start", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}"]
    head += ["--dashboard-host=127.0.0.1", f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dir}"]
    head += node_flags()
    try:
        subprocess.run(head, env=env, check=True, capture_output=True)
        subprocess.run(
            [str(RAY), "start", f"--address=127.0.0.1:{gcs}", *node_flags()], env=env, check=True, capture_output=True
        )
        yield {"env": env, "gcs": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dashboard}"}
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


TRIALS = 2
AGENT_WAIT_S = 120  # the job agent starts after `ray start` returns, slowly on a loaded machine


def submit_when_ready(command: list[str], env: dict) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the cluster's job agent is still starting."""
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if "No available agent" not in done.stdout + done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(5)


def ray_list(what: str, cluster: dict, *flags: str) -> list[dict]:
    """`ray list` as JSON, in a child process: a state client in the test process would outlive the
    cluster, and Ray ends a process whose cluster is gone."""
    command = [str(RAY), "list", what, "--address", cluster["gcs"], "--format", "json", *flags]
    return json.loads(subprocess.run(command, env=cluster["env"], capture_output=True, text=True, check=True).stdout)


def test_sweep_submitted_as_a_ray_job_runs_trials_on_both_nodes(cluster, tiny):
    assert len(ray_list("nodes", cluster)) == 2
    document = yaml.safe_load((tiny / "sweep.yaml").read_text())  # two trials at once: one a node
    document["budget"] = {"trials": TRIALS, "concurrency": 2}
    document["scheduler"] = {"rung_interval": 4, "max_steps": 8, "reduction_factor": 2}
    (tiny / "sweep.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    submit = [str(RAY), "job", "submit", "--address", cluster["dashboard"], "--"]
    submit += [sys.executable, "-m", "hpo", "sweep", str(tiny / "sweep.yaml"), "--quiet"]
    done = submit_when_ready(submit, cluster["env"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout + done.stderr

    (run_dir,) = (tiny / "runs").iterdir()
    rows = pq.read_table(run_dir / "trials.parquet").to_pylist()
    assert len({r["trial_id"] for r in rows}) == TRIALS
    assert (run_dir / "best" / "recipe.yaml").is_file()
    actors = ray_list("actors", cluster, "--detail")  # the trainable's class is local to Tune's wrap_function
    trial_actors = [actor for actor in actors if actor["class_name"].endswith("ImplicitFunc")]
    assert len({actor["node_id"] for actor in trial_actors}) == 2
