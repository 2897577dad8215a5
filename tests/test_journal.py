"""The study's journal file is safe with several processes writing at once."""

import multiprocessing
from pathlib import Path

import optuna

from hpo.search.searcher import open_study

TRIALS_PER_WRITER = 15
WRITERS = 3


def study_at(journal: str) -> optuna.Study:
    return open_study(Path(journal), "shared", optuna.samplers.TPESampler(seed=0, n_startup_trials=2))


def write_trials(journal: str) -> None:
    study = study_at(journal)
    for _ in range(TRIALS_PER_WRITER):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(-1.0, 1.0)})
        trial.report(trial.params["x"], 1)
        study.tell(trial, -(trial.params["x"] ** 2))


def test_concurrent_writers_lose_no_trial(tmp_path):
    journal = str(tmp_path / "study.journal")
    study_at(journal)  # create it once, as the sweep does
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=write_trials, args=(journal,)) for _ in range(WRITERS)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    trials = study_at(journal).trials
    assert len(trials) == WRITERS * TRIALS_PER_WRITER
    assert sorted(t.number for t in trials) == list(range(WRITERS * TRIALS_PER_WRITER))
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.value == -(t.params["x"] ** 2) for t in trials)
