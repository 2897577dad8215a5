"""The searcher/scheduler seam: how trial outcomes reach Optuna, how the rung seam learns
from them, and the rungs and stopping rule of the engine's ASHA."""

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from hpo.run.continuation import CONTINUES
from hpo.search.scheduler import asha_rungs, goes_on, leads_go_on, make_asha
from hpo.search.searcher import (
    LOCAL_EVERY,
    LOCAL_SPREAD,
    RAY_TRIAL_ID,
    RAY_TRIAL_IDS,
    RungTPESampler,
    RungView,
    TPESearcher,
    edge_reaching_tpe,
    incumbent,
    local_step,
    model_rung,
)
from hpo.search.space import Parameter, SearchSpace, load_space

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "sft_lora.yaml"


def searcher(tmp_path):
    return TPESearcher(load_space(SPACE), tmp_path / "study.journal", "s", seed=0, startup_trials=2)


def test_first_suggestion_is_the_published_defaults(tmp_path):
    s = searcher(tmp_path)
    assert s.suggest("t0") == load_space(SPACE).defaults()
    assert s.suggest("t1") != s.space.defaults()


def test_opening_the_sweep_study_keeps_the_live_view_clear(tmp_path, caplog):
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level(logging.INFO, logger="optuna"):
            searcher(tmp_path).suggest("t0")
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # restored after the quiet opening
    finally:
        optuna.logging.disable_propagation()
        optuna.logging.set_verbosity(verbosity)
    assert not [r for r in caplog.records if "study created" in r.getMessage()]


def test_outcomes_are_told_as_complete_pruned_and_failed(tmp_path):
    s = searcher(tmp_path)
    for trial_id in ("done", "stopped", "broken"):
        s.suggest(trial_id)
    for step in (2, 4):
        s.on_trial_result("done", {"step": step, "objective": 0.1 * step})
    s.on_trial_result("stopped", {"step": 2, "objective": -0.3})
    s.on_trial_complete("done", {"step": 4, "objective": 0.4, "final": 1.0})
    s.on_trial_complete("stopped", {"step": 2, "objective": -0.3, "final": 0.0})
    s.on_trial_complete("broken", None, error=True)
    trials = optuna.load_study(study_name="s", storage=s.study._storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert trials[0].value == 0.4 and trials[0].intermediate_values == {2: 0.2, 4: 0.4}
    assert trials[1].intermediate_values == {2: -0.3}


def test_a_pickled_searcher_reopens_the_journal_and_continues_a_running_trial(tmp_path):
    import pickle

    s = searcher(tmp_path)
    s.suggest("a")
    s.on_trial_result("a", {"step": 2, "objective": 0.5})
    s.save(str(tmp_path / "searcher.pkl"))  # Ray's copy; the journal is what a resumed sweep reads
    clone = pickle.loads(pickle.dumps(s))
    (running,) = clone.unfinished()
    clone.continue_trials([running.number])
    assert clone.suggest("b") == {**running.params, CONTINUES: "a"}  # a new Ray trial, recorded as "a"
    clone.on_trial_result("b", {"step": 2, "objective": 0.5})  # a rung recorded already is not reported twice
    clone.on_trial_complete("b", {"step": 4, "objective": 0.6, "final": 1.0})
    (trial,) = clone.study.trials
    assert trial.state == TrialState.COMPLETE and trial.intermediate_values == {2: 0.5, 4: 0.6}
    assert trial.user_attrs == {RAY_TRIAL_ID: "a", RAY_TRIAL_IDS: ["a", "b"]}


def test_the_result_asha_stopped_a_trial_on_is_recorded(tmp_path):
    # Ray hands the stopping result only to on_trial_complete, never to on_trial_result
    s = searcher(tmp_path)
    s.suggest("stopped")
    s.on_trial_result("stopped", {"step": 2, "objective": 0.1})
    s.on_trial_complete("stopped", {"step": 4, "objective": 0.2, "final": 0.0})
    (trial,) = s.study.trials
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {2: 0.1, 4: 0.2}


def test_a_paused_trial_dropped_without_a_result_is_pruned_not_failed(tmp_path):
    s = searcher(tmp_path)
    s.suggest("paused")
    s.on_trial_result("paused", {"step": 2, "objective": 0.1})
    s.on_trial_complete("paused")
    (trial,) = s.study.trials
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {2: 0.1}


def frozen(number: int, values: dict[int, float], state: TrialState = TrialState.PRUNED) -> optuna.trial.FrozenTrial:
    distributions = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    trial = optuna.trial.create_trial(
        state=state, params={"x": 0.5}, distributions=distributions, intermediate_values=values
    )
    trial.number = number
    return trial


def test_the_model_rung_is_the_highest_with_enough_values():
    # ten trials at step 1, two of them at step 3 and one at step 9
    trials = [frozen(0, {1: 0.1, 3: 0.2, 9: 0.3}), frozen(1, {1: 0.1, 3: 0.2})] + [
        frozen(2 + i, {1: 0.1}) for i in range(8)
    ]
    assert model_rung(trials, (1, 3, 9), min_observations=11) is None  # the lowest rung is short of values
    assert model_rung(trials, (1, 3, 9), min_observations=5) == 1  # no higher rung holds 3
    assert model_rung(trials, (1, 3, 9), min_observations=2) == 3  # a small startup lowers the climb too
    trials.append(frozen(10, {1: 0.1, 3: 0.2}))
    assert model_rung(trials, (1, 3, 9), min_observations=5) == 3  # 3 values at step 3 are enough to climb
    assert model_rung(trials, (), min_observations=5) == 3  # no rungs given: every reported step


def test_a_rung_view_leaves_out_running_survivors_and_counts_fresh_trials_as_bad():
    view = RungView(3, optuna.study.StudyDirection.MAXIMIZE, optuna.samplers.TPESampler(seed=0), rungs=(1, 3, 9))
    ended_low = frozen(0, {1: 0.1})  # stopped below the rung: a bad example
    survivor = frozen(1, {1: 0.9, 2: 0.9}, TrialState.RUNNING)  # past rung 1, still going: no verdict yet
    fresh = frozen(2, {}, TrialState.RUNNING)  # just suggested: the constant liar's pessimistic guess
    reached = frozen(3, {1: 0.5, 3: 0.7})
    between = frozen(4, {2: 0.3}, TrialState.RUNNING)  # reported, but not at a judged rung
    view.sync([ended_low, survivor, fresh, reached, between])
    states = {t.number: t.state for t in view.study.trials}
    assert sorted(view.numbers) == [0, 2, 3, 4]
    assert states[view.numbers[3]] == TrialState.COMPLETE and view.study.trials[view.numbers[3]].value == 0.7
    assert all(states[view.numbers[n]] == TrialState.RUNNING for n in (0, 2, 4))
    survivor = frozen(1, {1: 0.9, 2: 0.9, 3: 0.8}, TrialState.RUNNING)  # it reaches the rung
    view.sync([ended_low, survivor, fresh, reached, between])
    assert view.study.trials[view.numbers[1]].value == 0.8


def test_the_rung_seam_follows_the_high_fidelity_values_not_the_low_ones(tmp_path):
    """Low x learns fast (wins at step 1) but ends worse; high x wins at step 9.

    Stopped-early trials are all low-x ones, so a sampler that ranks by how far a trial got
    or by its last value would chase low x; the rung seam models step 9 and proposes high x.
    """
    space = SearchSpace("toy", "sft", "lora", (Parameter("x", "float", 0.5, 0.0, 1.0),))
    s = TPESearcher(space, tmp_path / "study.journal", "toy", seed=0, startup_trials=4, rungs=(1, 3, 9))
    s.suggest("defaults")
    s.on_trial_complete("defaults", {"step": 9, "objective": 0.5, "final": 1.0})
    rng = np.random.default_rng(0)
    for index in range(30):
        x = float(rng.random())
        trial_id = f"seed-{index}"
        s.study.enqueue_trial({"x": x})
        s.suggest(trial_id)
        s.on_trial_result(trial_id, {"step": 1, "objective": 1.0 - x})
        if x < 0.5:  # fast learners look best at step 1; ASHA would keep only those
            s.on_trial_complete(trial_id, {"step": 3, "objective": 1.0 - x, "final": 0.0})
        else:
            s.on_trial_result(trial_id, {"step": 3, "objective": 0.2 + x})
            s.on_trial_complete(trial_id, {"step": 9, "objective": x, "final": 1.0})
    proposals = [s.suggest(f"model-{i}")["x"] for i in range(10)]
    assert np.median(proposals) > 0.7, proposals


def test_the_rung_seam_samples_at_random_until_the_lowest_rung_has_enough_values(tmp_path):
    space = SearchSpace("toy", "sft", "lora", (Parameter("x", "float", 0.5, 0.0, 1.0),))
    s = TPESearcher(space, tmp_path / "study.journal", "toy", seed=0, startup_trials=3, rungs=(1, 3))
    sampler = s.study.sampler
    assert isinstance(sampler, RungTPESampler)
    s.suggest("a")
    s.on_trial_result("a", {"step": 1, "objective": 0.3})
    s.suggest("b")
    assert sampler._view is None  # one value at step 1: below startup_trials, still random
    s.on_trial_result("b", {"step": 1, "objective": 0.4})
    s.suggest("c")
    s.on_trial_result("c", {"step": 1, "objective": 0.5})
    s.suggest("d")
    assert sampler._view is not None and sampler._view.step == 1


def test_the_rung_seam_reaches_to_the_edges_of_the_range_without_a_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's deprecation warning for the argument stays inside
        sampler = edge_reaching_tpe(seed=0)
        s = TPESearcher(load_space(SPACE), tmp_path / "study.journal", "s", seed=0, startup_trials=2)
        rung_sampler = s.study.sampler
    assert sampler._parzen_estimator_parameters.consider_endpoints
    assert rung_sampler._tpe._parzen_estimator_parameters.consider_endpoints


def test_the_incumbent_is_the_best_trial_at_the_highest_step_reported():
    trials = [frozen(0, {1: 0.9}), frozen(1, {1: 0.2, 3: 0.4}), frozen(2, {1: 0.1, 3: 0.6}), frozen(3, {})]
    assert incumbent(trials, optuna.study.StudyDirection.MAXIMIZE).number == 2  # not trial 0, best only at step 1
    assert incumbent(trials, optuna.study.StudyDirection.MINIMIZE).number == 1
    assert incumbent([frozen(0, {})], optuna.study.StudyDirection.MAXIMIZE) is None


def test_a_local_step_stays_near_its_start_in_range_and_on_the_grid():
    space = {
        "lr": optuna.distributions.FloatDistribution(1e-6, 1e-4, log=True),
        "ratio": optuna.distributions.FloatDistribution(0.0, 1.0),
        "batch": optuna.distributions.IntDistribution(4, 64, step=4),
        "rank": optuna.distributions.CategoricalDistribution([16, 32, 64]),
    }
    start = {"lr": 1e-4, "ratio": 0.5, "batch": 32, "rank": 32}
    rng = np.random.RandomState(0)
    steps = [local_step(start, space, rng) for _ in range(2000)]
    assert all(1e-6 <= s["lr"] <= 1e-4 and 0.0 <= s["ratio"] <= 1.0 and s["batch"] % 4 == 0 for s in steps)
    assert all(isinstance(s["batch"], int) and s["rank"] in (16, 32, 64) for s in steps)
    spread = LOCAL_SPREAD * (np.log(1e-4) - np.log(1e-6))  # in log space
    moved_down = np.log(1e-4) - np.log([s["lr"] for s in steps])  # from the upper end: up is clipped to it
    assert abs(np.mean(moved_down == 0.0) - 0.5) < 0.05
    assert abs(np.mean(moved_down) - spread / math.sqrt(2 * math.pi)) < 0.1 * spread
    assert abs(np.std([s["ratio"] for s in steps]) - LOCAL_SPREAD) < 0.1 * LOCAL_SPREAD  # a little less: clipped
    stays = math.erf(0.5 / (2 * LOCAL_SPREAD) / math.sqrt(2))  # within half an index step of the middle choice
    assert abs(np.mean([s["rank"] == 32 for s in steps]) - stays) < 0.05
    unordered = {**space, "rank": optuna.distributions.CategoricalDistribution([64, 16, 32])}
    ranks = [local_step(start, unordered, rng)["rank"] for _ in range(2000)]  # 32 is in the middle of 16 < 32 < 64
    assert (
        abs(np.mean([r == 32 for r in ranks]) - stays) < 0.05
        and abs(np.mean([r == 16 for r in ranks]) - (1 - stays) / 2) < 0.05
    )


def modelling_searcher(tmp_path, name: str) -> tuple[TPESearcher, list[float]]:
    """A searcher on a one-parameter space whose three first trials ended at step 3, enough for TPE."""
    space = SearchSpace("toy", "sft", "lora", (Parameter("x", "float", 0.5, 0.0, 1.0),))
    s = TPESearcher(space, tmp_path / f"{name}.journal", "toy", seed=3, startup_trials=3, rungs=(1, 3))
    seen = []
    for index in range(3):  # the defaults, then random values
        x = s.suggest(f"seed-{index}")["x"]
        s.on_trial_result(f"seed-{index}", {"step": 1, "objective": x})
        s.on_trial_complete(f"seed-{index}", {"step": 3, "objective": x, "final": 1.0})
        seen.append(x)
    return s, seen


def test_while_other_trials_run_every_third_trial_is_a_local_step_around_the_incumbent(tmp_path):
    s, seen = modelling_searcher(tmp_path, "parallel")
    proposals = {}
    for index in range(2 * LOCAL_EVERY + 1):  # none of them ends: all but the first ask while others run
        x = s.suggest(f"model-{index}")["x"]
        proposals[s.live[f"model-{index}"].number] = x
    local = [x for number, x in proposals.items() if number % LOCAL_EVERY == 0]
    rng = np.random.RandomState(3)
    assert len(local) == 3 and local == [local_step({"x": max(seen)}, s.space.distributions(), rng)["x"] for _ in local]


def test_with_one_worker_every_third_trial_is_a_local_step_around_the_incumbent_too(tmp_path):
    s, seen = modelling_searcher(tmp_path, "serial")
    rng = np.random.RandomState(3)
    steps = 0
    for index in range(2 * LOCAL_EVERY):  # each trial ends before the next is asked for
        x = s.suggest(f"model-{index}")["x"]
        if s.live[f"model-{index}"].number % LOCAL_EVERY == 0:
            assert x == local_step({"x": max(seen)}, s.space.distributions(), rng)["x"]
            steps += 1
        s.on_trial_complete(f"model-{index}", {"step": 3, "objective": x, "final": 1.0})
        seen.append(x)
    assert steps == 2


# The scheduler side of the seam: which rungs exist and who goes on from them.


class Trial:  # what a scheduler reads from Ray's Trial
    def __init__(self, trial_id: str, config: dict | None = None) -> None:
        self.trial_id = trial_id
        self.config = config or {}


def test_the_rungs_are_ray_asha_milestones_then_max_steps():
    from ray.tune.schedulers import ASHAScheduler

    for grace, max_t, factor in ((1, 52, 3), (3, 52, 3), (20, 60, 3), (4, 16, 2)):
        ray_asha = ASHAScheduler(
            time_attr="step", metric="objective", mode="max", grace_period=grace, max_t=max_t, reduction_factor=factor
        )
        milestones = sorted(int(m) for m, _ in ray_asha._brackets[0]._rungs)
        assert asha_rungs(grace, max_t, factor) == tuple(sorted({*milestones, max_t}))
    assert asha_rungs(20, 100, 2.5) == (20, 60, 100)  # milestone 50 is judged at the next report, 60


def test_a_trial_goes_on_only_within_the_top_share_of_its_rung():
    assert goes_on(1.0, [1.0], 3)  # alone at the rung: the best so far goes on
    assert goes_on(1.0, [1.0, 0.5], 3)
    assert not goes_on(0.5, [1.0, 0.5], 3)  # below reduction_factor values, only a new best
    assert goes_on(1.0, [1.0, 0.5, 0.7], 3)
    assert not goes_on(0.7, [1.0, 0.5, 0.7], 3)
    assert goes_on(0.7, [1.0, 0.5, 0.7, 0.1, 0.2, 0.3], 3)  # 2nd of 6: top 2 go on
    assert not goes_on(1.0, [1.0, 0.5], 3, lead=False)  # no leader: waits for reduction_factor values
    assert goes_on(1.0, [1.0, 0.5, 0.7], 3, lead=False)


def test_only_a_sweep_too_small_to_fill_its_rungs_sends_a_rung_leader_on():
    assert leads_go_on(trials=27, judged_rungs=2, reduction_factor=3)  # 3 ** (2 + 1)
    assert not leads_go_on(trials=28, judged_rungs=2, reduction_factor=3)
    assert not leads_go_on(trials=None, judged_rungs=1, reduction_factor=2)  # bounded by time or compute
    assert make_asha(max_steps=40, rung_interval=20, reduction_factor=2, trials=4).leads  # the demo's sweep
    scheduler = make_asha(max_steps=9, rung_interval=1, reduction_factor=3)
    decisions = [
        scheduler.on_trial_result(None, Trial(f"t{i}"), {"step": 1, "objective": v})
        for i, v in enumerate((0.9, 0.2, 0.5, 0.95))
    ]
    assert decisions == [TrialScheduler.STOP, TrialScheduler.STOP, TrialScheduler.STOP, TrialScheduler.CONTINUE]


def test_strict_asha_stops_at_its_rungs_and_records_where():
    scheduler = make_asha(max_steps=9, rung_interval=1, reduction_factor=3, trials=10)
    assert scheduler.rungs == (1, 3)
    decisions = [
        scheduler.on_trial_result(None, Trial(f"t{i}"), {"step": 1, "objective": v})
        for i, v in enumerate((0.2, 0.1, 0.9))
    ]
    assert decisions == [TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.CONTINUE]
    assert scheduler.on_trial_result(None, Trial("t2"), {"step": 2, "objective": 0.95}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, Trial("t2"), {"step": 9, "objective": 0.99}) == TrialScheduler.STOP
    assert scheduler.stopped_at == {"t1": 1}
    nan = scheduler.on_trial_result(None, Trial("t3"), {"step": 1, "objective": float("nan")})
    assert nan == TrialScheduler.STOP and scheduler.recorded[1]["t3"] == float("-inf")


def test_strict_asha_survives_pickle_and_save_restore(tmp_path):
    import pickle

    scheduler = make_asha(max_steps=9, rung_interval=1, reduction_factor=3, trials=10)
    for i, v in enumerate((0.2, 0.1, 0.9)):
        scheduler.on_trial_result(None, Trial(f"t{i}"), {"step": 1, "objective": v})
    scheduler.save(str(tmp_path / "scheduler.pkl"))
    restored = make_asha(max_steps=9, rung_interval=1, reduction_factor=3, trials=10)
    restored.restore(str(tmp_path / "scheduler.pkl"))
    for clone in (restored, pickle.loads(pickle.dumps(scheduler))):
        assert clone.recorded == scheduler.recorded and clone.stopped_at == scheduler.stopped_at
        assert clone.on_trial_result(None, Trial("t9"), {"step": 1, "objective": 0.0}) == TrialScheduler.STOP


def test_strict_asha_rebuilt_from_the_record_decides_as_the_original(tmp_path):
    results = [("t0", 1, 0.2), ("t1", 1, 0.1), ("t2", 1, 0.9), ("t2", 2, 0.95), ("t3", 1, None)]
    original = make_asha(max_steps=9, rung_interval=1, reduction_factor=3, trials=10)
    for trial_id, step, value in results:
        original.on_trial_result(None, Trial(trial_id), {"step": step, "objective": float(value or "nan")})
    rebuilt = make_asha(max_steps=9, rung_interval=1, reduction_factor=3, trials=10)
    rebuilt.replay(results)
    assert rebuilt.recorded == original.recorded and rebuilt.stopped_at == original.stopped_at
    assert rebuilt.on_trial_result(None, Trial("t4"), {"step": 1, "objective": 0.95}) == TrialScheduler.CONTINUE
    # a resumed sweep's new Ray trial that continues t2 is judged as t2: its rung 1 is on record already
    assert rebuilt.on_trial_result(None, Trial("new", {CONTINUES: "t2"}), {"step": 1, "objective": 0.0}) == (
        TrialScheduler.CONTINUE
    )
    assert "new" not in rebuilt.recorded[1]


def test_a_resumed_searcher_goes_by_the_journal(tmp_path):
    s = searcher(tmp_path)
    s.suggest("finished")
    s.suggest("running")
    s.on_trial_result("running", {"step": 2, "objective": 0.3})
    s.on_trial_result("running", {"step": 4, "objective": 0.4})
    s.on_trial_complete("finished", {"step": 2, "objective": 0.1, "final": 1.0})
    s.suggest("never_run")  # asked just before the driver stopped: Ray never ran it
    resumed = searcher(tmp_path)
    assert [t.number for t in resumed.unfinished()] == [1, 2] and resumed.ended() == 1
    resumed.continue_trials([1, 2])
    again = resumed.suggest("running-again")
    assert again[CONTINUES] == "running" and resumed.last_step == {"running-again": 4}
    fresh = resumed.suggest("never-run-again")  # same parameters; no rung of it is recorded, so from the start
    assert fresh == {**resumed.study.trials[2].params, CONTINUES: "never_run"}
    assert resumed.study.trials[2].user_attrs[RAY_TRIAL_IDS] == ["never_run", "never-run-again"]
    resumed.on_trial_complete("running-again", {"step": 6, "objective": 0.5, "final": 1.0})
    assert resumed.study.trials[1].intermediate_values == {2: 0.3, 4: 0.4, 6: 0.5}


def test_a_resumed_searcher_does_not_draw_the_stopped_sweeps_configurations_again(tmp_path):
    """Every resume re-ran one configuration an earlier trial had: the new sampler replayed the seed's stream."""
    first = searcher(tmp_path)
    drawn = [first.suggest(f"t{i}") for i in range(4)]
    for i in range(4):
        first.on_trial_complete(f"t{i}", {"step": 2, "objective": 0.1 * i, "final": 1.0})
    resumed = searcher(tmp_path)
    new = [resumed.suggest(f"r{i}") for i in range(3)]
    assert not [params for params in new if params in drawn]
    uninterrupted = TPESearcher(load_space(SPACE), tmp_path / "other.journal", "s", seed=0, startup_trials=2)
    assert [uninterrupted.suggest(f"u{i}") for i in range(4)] == drawn  # a fresh sweep is as reproducible as before
