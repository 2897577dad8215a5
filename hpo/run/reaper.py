"""Ends embedded Ray's processes when the driver that started them dies, however it dies.

Ray ties its head processes (GCS, raylet) to the driver, but the agents the raylet starts
notice only after about a minute that it is gone, and a SIGKILLed driver runs no exit
handler. `watch_ray()` starts this module as a small process with a pipe from the driver:
while the pipe is open it notes the driver's Ray processes every few seconds; when it
closes (the driver exited or was killed) it ends the ones still alive, SIGTERM first and
SIGKILL after a grace period.

    python -m hpo.run.reaper DRIVER_PID
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time

import psutil

REFRESH_S = 2.0  # how often the driver's Ray processes are noted
GRACE_S = 3.0  # between SIGTERM and SIGKILL
RAY_PROCESS = re.compile(r"(^ray::|raylet|gcs_server|[/\\]ray[/\\]|\bray\.)")


def is_ray(process: psutil.Process) -> bool:
    try:
        return bool(RAY_PROCESS.search(" ".join(process.cmdline()) or process.name()))
    except psutil.Error:
        return False


def ray_processes(driver: psutil.Process) -> dict[int, float]:
    """The driver's descendant Ray processes, pid -> start time (a pid may be reused later)."""
    try:
        descendants = driver.children(recursive=True)
    except psutil.Error:
        return {}
    found = {}
    for process in descendants:
        if process.pid != os.getpid() and is_ray(process):
            try:
                found[process.pid] = process.create_time()
            except psutil.Error:
                pass
    return found


def still_alive(noted: dict[int, float]) -> list[psutil.Process]:
    """The noted processes that are still the same processes, and whatever they started since."""
    alive = {}
    for pid, started in noted.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started:
                alive[pid] = process
                alive.update({child.pid: child for child in process.children(recursive=True)})
        except psutil.Error:
            continue
    return list(alive.values())


def end(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, left = psutil.wait_procs(processes, timeout=GRACE_S)
    for process in left:
        try:
            process.kill()
        except psutil.Error:
            pass


def watch(driver_pid: int) -> None:
    """Note the driver's Ray processes until stdin closes, then end those still alive."""
    driver = psutil.Process(driver_pid)
    noted: dict[int, float] = {}
    while True:
        noted.update(ray_processes(driver))
        ready, _, _ = select.select([sys.stdin], [], [], REFRESH_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break
    time.sleep(GRACE_S)  # a driver that exits normally shuts Ray down itself first
    end(still_alive(noted))


def watch_ray() -> subprocess.Popen:
    """Start the reaper for this process's embedded Ray; it lives until this process ends."""
    return subprocess.Popen(
        [sys.executable, "-m", "hpo.run.reaper", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the driver's terminal must not end the reaper first
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))
