"""Syne Tune's schedulers as peers in the simulated-time backend (benchmarks/search/syne.py).

The tests that drive a scheduler skip without the release they need: Syne Tune 0.16 (the
`peers` extra) in this environment, 0.13 in its own folder (benchmarks/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmarks.search import syne
from benchmarks.search.backend import simulate
from benchmarks.search.methods import SYNE, available
from benchmarks.search.problem import Curve
from hpo.search.space import Parameter, SearchSpace

EPOCHS = 52
SPACE = SearchSpace(
    "toy",
    "benchmark",
    "toy",
    (Parameter("x", "float", 0.5, 0.0, 1.0), Parameter("width", "int", 64, 16, 512, log=True)),
)
ROOT = Path(__file__).resolve().parents[1]


def toy_curve(config: dict) -> Curve:
    """Accuracy rises towards 100 * (1 - |x - 0.3|); every epoch takes 1 + x simulated seconds."""
    ceiling = 100 * (1 - abs(config["x"] - 0.3))
    epochs = np.arange(1, EPOCHS + 1)
    return Curve(ceiling * (1 - np.exp(-epochs / 10)), np.full(EPOCHS, 1 + config["x"]))


def test_a_release_not_installed_is_left_out_with_the_command_that_installs_it(tmp_path, monkeypatch):
    monkeypatch.setattr(syne, "LEGACY_PATH", tmp_path / "nothing-here")
    kept, missing = available(list(SYNE))
    assert {m.searcher for m in kept} <= set(syne.CURRENT_PEERS)
    assert len(missing) >= len(syne.LEGACY_PEERS)
    assert all("needs Syne Tune" in line and "pip install" in line for line in missing)
    with pytest.raises(ValueError, match="must be one of"):
        syne.release("smac")


def test_the_space_becomes_syne_tunes_domains():
    pytest.importorskip("syne_tune")
    space = syne.config_space(SPACE)
    assert (space["x"].lower, space["x"].upper) == (0.0, 1.0)
    assert (space["width"].lower, space["width"].upper) == (16, 512) and type(space["width"]).__name__ == "Integer"


current = pytest.mark.skipif(
    not syne.installed(syne.CURRENT), reason=f"needs Syne Tune {syne.CURRENT}: pip install -e '.[peers]'"
)


@current
@pytest.mark.parametrize("peer", syne.CURRENT_PEERS)
def test_a_current_peer_starts_from_the_defaults_and_stops_trials_at_the_shared_rungs(peer):
    driver = syne.make_driver(peer, SPACE, 0, toy_curve, EPOCHS, 3, 3)
    trace = simulate(driver, 12 * EPOCHS, workers=1)
    assert driver.trials[0].config == SPACE.defaults()
    ended = {trial.epochs for trial in driver.trials if trial.status == "TERMINATED"}
    assert ended <= {3, 9, 27, EPOCHS} and len(ended) > 1  # stopped at a rung, or trained to the end
    assert trace.trials > 12 and trace.epochs[-1] <= 12 * EPOCHS


@current
def test_a_current_peer_suggests_while_other_trials_run():
    trace = simulate(syne.make_driver("bohb", SPACE, 0, toy_curve, EPOCHS, 3, 3), 8 * EPOCHS, workers=4)
    assert trace.max_running == 4 and trace.suggested_while_running > 0


@pytest.mark.skipif(
    not syne.installed(syne.LEGACY), reason=f"needs Syne Tune {syne.LEGACY}: {syne.INSTALL[syne.LEGACY]}"
)
def test_dehb_pauses_trials_at_their_rung_and_resumes_the_promoted_ones():
    """0.13 runs in a process of its own, with its folder first on the path, as the benchmark runs it."""
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(syne.LEGACY_PATH)!r})
        from benchmarks.search import syne
        from benchmarks.search.backend import simulate
        from tests.test_syne_peers import SPACE, toy_curve
        driver = syne.make_driver("dehb", SPACE, 0, toy_curve, 52, 3, 3)
        resumed = []
        next_trial = driver.next_trial
        def counting():
            trial = next_trial()
            if trial is not None and trial.epochs > 0:
                resumed.append(trial.trial_id)
            return trial
        driver.next_trial = counting
        trace = simulate(driver, 15 * 52, workers=2)
        print(json.dumps({{"resumed": len(resumed), "trials": trace.trials, "spent": trace.epochs[-1],
                          "over": [t.trial_id for t in driver.trials if t.epochs > t.config["epochs"]]}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["resumed"] > 0 and found["trials"] > 10 and found["spent"] <= 15 * 52
    assert found["over"] == []  # no trial trained past the epoch its rung named
