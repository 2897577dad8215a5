"""How trial outcomes reach Optuna: complete, pruned (stopped by ASHA) or failed."""

from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo.searcher import TPESearcher
from hpo.space import load_space

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "sft_lora.yaml"


def searcher(tmp_path):
    return TPESearcher(load_space(SPACE), tmp_path / "study.journal", "s", seed=0, startup_trials=2)


def test_first_suggestion_is_the_published_defaults(tmp_path):
    s = searcher(tmp_path)
    assert s.suggest("t0") == load_space(SPACE).defaults()
    assert s.suggest("t1") != s.space.defaults()


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


def test_state_survives_a_pickle_round_trip_and_reopens_the_journal(tmp_path):
    import pickle

    s = searcher(tmp_path)
    s.suggest("a")
    s.on_trial_result("a", {"step": 2, "objective": 0.5})
    s.save(str(tmp_path / "searcher.pkl"))
    clone = pickle.loads(pickle.dumps(s))
    clone.restore(str(tmp_path / "searcher.pkl"))
    clone.on_trial_complete("a", {"step": 4, "objective": 0.6, "final": 1.0})
    (trial,) = clone.study.trials
    assert trial.state == TrialState.COMPLETE and trial.intermediate_values == {2: 0.5, 4: 0.6}
