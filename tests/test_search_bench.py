"""The search benchmark: the simulated-time backend on made-up curves, then a tiny LCBench run.

The LCBench part is skipped without onnxruntime or the surrogate's data folder.
"""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
from optuna.samplers import TPESampler
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from benchmarks.search.backend import RayDriver, simulate
from benchmarks.search.methods import ALL, STARTUP_TRIALS, RandomSearcher, make_scheduler, make_searcher
from benchmarks.search.metrics import Run
from benchmarks.search.peers import PrunedTPESearcher, make_ray_asha
from benchmarks.search.problem import Curve
from benchmarks.search.run import method_list
from hpo.search.space import Parameter, SearchSpace

EPOCHS = 52
SPACE = SearchSpace("toy", "benchmark", "toy", (Parameter("x", "float", 0.5, 0.0, 1.0),))


def toy_curve(config: dict) -> Curve:
    """Accuracy rises towards 100 * (1 - |x - 0.3|); every epoch takes 1 + x simulated seconds."""
    ceiling = 100 * (1 - abs(config["x"] - 0.3))
    epochs = np.arange(1, EPOCHS + 1)
    return Curve(ceiling * (1 - np.exp(-epochs / 10)), np.full(EPOCHS, 1 + config["x"]))


def random_asha() -> RayDriver:
    return RayDriver(RandomSearcher(SPACE, 0), make_scheduler("asha", None), toy_curve)


@pytest.mark.parametrize(
    "searcher_kind,scheduler_kind", [("ours", "strict-asha"), ("random", "asha"), ("tpe", "median")]
)
def test_the_backend_spends_the_budget_and_tracks_the_incumbent(tmp_path, searcher_kind, scheduler_kind):
    searcher = make_searcher(searcher_kind, SPACE, seed=0, workdir=tmp_path)
    driver = RayDriver(searcher, make_scheduler(scheduler_kind, searcher), toy_curve)
    trace = simulate(driver, budget_epochs=10 * EPOCHS, workers=1)
    assert trace.epochs[-1] <= 10 * EPOCHS and trace.values == sorted(trace.values)
    assert len(trace.seconds) == len(trace.values) and trace.seconds == sorted(trace.seconds)
    assert trace.trials > 10  # early stopping made room for more trials than 10 full trainings
    assert trace.max_running == 1 and trace.suggested_while_running == 0


def test_four_workers_run_trials_concurrently_in_simulated_time(tmp_path):
    one = simulate(random_asha(), 10 * EPOCHS, workers=1)
    four = simulate(random_asha(), 10 * EPOCHS, workers=4)
    assert four.max_running == 4 and four.suggested_while_running > 0
    assert four.simulated_seconds < one.simulated_seconds / 2  # the same compute, spread over 4 workers


def test_the_overlap_counts_what_other_workers_ran_while_the_improving_trial_trained():
    one = simulate(random_asha(), 10 * EPOCHS, workers=1)
    four = simulate(random_asha(), 10 * EPOCHS, workers=4)
    assert one.overlap == [0] * len(one.values)  # one worker: nothing else runs
    assert len(four.overlap) == len(four.values) and max(four.overlap) > 0
    assert all(0 <= overlap < spent for overlap, spent in zip(four.overlap, four.epochs))


def test_a_run_reaches_a_target_on_the_compute_and_the_clock_axes():
    run = Run(
        "m",
        "t",
        0,
        epochs=(3, 9, 40),
        values=(50.0, 70.0, 90.0),
        seconds=(6.0, 20.0, 55.0),
        overlap=(0, 0, 12),
        trials=5,
        simulated_seconds=80.0,
        max_running=1,
        suggested_while_running=0,
        wall_seconds=0.1,
    )
    assert (run.epochs_to_reach(70.0), run.seconds_to_reach(70.0)) == (9.0, 20.0)
    assert (run.epochs_to_reach(80.0), run.seconds_to_reach(80.0)) == (40.0, 55.0)
    assert math.isinf(run.seconds_to_reach(95.0))
    assert run.overlap_to_reach(80.0) == 12.0 and math.isinf(run.overlap_to_reach(95.0))


def test_the_tpe_peer_is_optunas_own_sampler_over_the_engines_records(tmp_path):
    searcher = make_searcher("tpe", SPACE, seed=0, workdir=tmp_path)
    assert isinstance(searcher, PrunedTPESearcher) and type(searcher.study.sampler) is TPESampler
    searcher.suggest("stopped")
    searcher.on_trial_result("stopped", {"step": 3, "objective": 0.5})
    searcher.on_trial_complete("stopped", {"step": 9, "objective": 0.6, "final": 0.0})
    (trial,) = searcher.study.trials
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {3: 0.5, 9: 0.6}
    clone = pickle.loads(pickle.dumps(searcher))  # as Ray ships a searcher
    assert type(clone.study.sampler) is TPESampler and len(clone.study.trials) == 1


class Trial:  # what a scheduler reads from Ray's Trial
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def test_rays_asha_peer_records_the_trials_it_stopped_early():
    scheduler = make_ray_asha(max_steps=9, rung_interval=1, reduction_factor=3)
    trials = [Trial("t0"), Trial("t1")]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, trials[0], {"step": 1, "objective": 0.9}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, trials[1], {"step": 1, "objective": 0.1}) == TrialScheduler.STOP
    final = {"step": 9, "objective": 0.95, "final": 1.0}
    assert scheduler.on_trial_result(None, trials[0], final) == TrialScheduler.STOP
    assert scheduler.stopped_at == {"t1": 1}  # a trial that ran to the end was not stopped early


def test_hyperband_pauses_and_resumes_trials(tmp_path):
    searcher = RandomSearcher(SPACE, 0)
    trace = simulate(RayDriver(searcher, make_scheduler("hyperband", searcher), toy_curve, pending=34), 10 * EPOCHS, 1)
    assert trace.trials > 10 and trace.epochs[-1] <= 10 * EPOCHS


def test_a_smaller_budget_is_the_start_of_a_larger_one(tmp_path):
    """The small-budget tables read one run at several budgets: that is only right if a run with a
    budget of B is exactly the first B epochs of a longer run."""
    traces = []
    for budget in (10, 20):
        (tmp_path / str(budget)).mkdir()
        searcher = make_searcher("ours", SPACE, seed=0, workdir=tmp_path / str(budget))
        traces.append(
            simulate(RayDriver(searcher, make_scheduler("strict-asha", searcher), toy_curve), budget * EPOCHS, 4)
        )
    short, long = traces
    kept = sum(epochs <= 10 * EPOCHS for epochs in long.epochs)
    assert kept < len(long.epochs)  # the longer run improved after the shorter one's budget
    assert (long.epochs[:kept], long.values[:kept], long.seconds[:kept]) == (short.epochs, short.values, short.seconds)


def test_the_peers_are_the_ones_the_issue_names():
    keys = {method.key for method in ALL}
    assert {"ours", "random", "tpe", "random+asha", "random+hyperband", "tpe+hyperband", "tpe+median"} <= keys
    assert {"ray-optuna+asha", "ours x4", "random+asha x4"} <= keys
    assert {"syne-asha", "syne-bohb", "syne-dehb", "syne-hypertune", "syne-mobster"} <= keys
    assert STARTUP_TRIALS >= 1


pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from benchmarks.search.lcbench import default_path
    from benchmarks.search.run import main

    if not (default_path() / "model.onnx").is_file():
        pytest.skip(f"LCBench data not found at {default_path()}")
    out = tmp_path_factory.mktemp("search-bench")
    assert main(["--tasks", "167149", "--seeds", "1", "--budget", "4", "--jobs", "1", "--out", str(out)]) == 0
    return out


def test_the_tiny_run_writes_the_table_with_ours_and_every_peer(tiny_run):
    table = (tiny_run / "results.md").read_text()
    ran, left_out = method_list("")
    for method in ran:
        assert f"| {method.key} |" in table, method.key
    for line in left_out:  # a Syne Tune release not installed: said so, with the command that installs it
        assert f"Left out, not installed: {line}" in table and "pip install" in line
    assert "## Goals" in table and "budget fraction" in table and "simulated h to match" in table
    assert "less the compute the other workers spent while the matching trial trained" in table
    assert (tiny_run / "regret.png").stat().st_size > 1000


def test_every_method_ran_and_four_workers_overlapped(tiny_run):
    document = json.loads((tiny_run / "results.json").read_text())
    runs = {run["method"]: run for run in document["runs"]}
    assert set(runs) == {method.key for method in method_list("")[0]}
    for run in runs.values():
        assert run["trials"] >= 1 and run["epochs"] and run["epochs"][-1] <= 4 * EPOCHS
    for key in ("ours x4", "random+asha x4"):
        assert runs[key]["max_running"] == 4 and runs[key]["suggested_while_running"] > 0
        assert runs[key]["simulated_seconds"] < runs[key.removesuffix(" x4")]["simulated_seconds"]
    assert document["targets"]["167149"] == runs["random"]["values"][-1]  # one seed: its final incumbent
