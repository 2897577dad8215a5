"""A warm start's uses of earlier sweeps (hpo/search/prior.py): the first trials, and a prior that fades."""

from __future__ import annotations

import numpy as np
from optuna.trial import TrialState

from hpo.search.history import History, PastTrial
from hpo.search.prior import PRIOR_OBSERVATIONS, PriorView, fit_to_space, prior_share, ranks, warm_configs
from hpo.search.searcher import TPESearcher, edge_reaching_tpe, quiet_study
from hpo.search.space import Parameter, SearchSpace

SPACE = SearchSpace(
    "toy",
    "sft",
    "lora",
    (
        Parameter("learning_rate", "float", 1e-4, 1e-5, 1e-2, log=True),
        Parameter("lora_rank", "choice", 16, values=(8, 16, 32)),
        Parameter("warmup_ratio", "float", 0.1, 0.0, 0.3),
    ),
)


def history(good_rate: float, source: str = "earlier", seed: int = 0) -> History:
    """30 trials; the nearer a trial's learning rate to `good_rate` (log scale), the higher it scores.
    Two thirds stop at step 10, the best third reach step 30."""
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.uniform(np.log(1e-5), np.log(1e-2), 30))
    scores = [-abs(np.log(rate) - np.log(good_rate)) for rate in rates]
    best_third = sorted(scores)[-10]
    trials = []
    for rate, score in zip(rates, scores):
        values = {10: score, 30: score + 1.0} if score >= best_third else {10: score}
        params = {"learning_rate": float(rate), "lora_rank": 16, "warmup_ratio": 0.1}
        trials.append(PastTrial(params, values, max(values.values())))
    return History(source, tuple(trials))


def prior(histories: list[History]) -> PriorView:
    study = quiet_study(direction="maximize", sampler=edge_reaching_tpe(0))
    return PriorView(histories, {p.name: p.distribution() for p in SPACE.parameters}, study, climb=3)


def test_the_prior_weighs_less_as_the_sweeps_own_values_arrive():
    assert prior_share(0) == 1.0 and prior_share(PRIOR_OBSERVATIONS) == 0.5
    assert prior_share(9 * PRIOR_OBSERVATIONS) == 0.1


def test_a_configuration_from_another_space_is_moved_into_this_one():
    moved = fit_to_space({"learning_rate": 0.5, "lora_rank": 20, "dropout": 0.1}, SPACE)
    assert moved == {"learning_rate": 1e-2, "lora_rank": 16, "warmup_ratio": 0.1}  # clipped, nearest choice, default


def test_the_first_trials_after_the_defaults_are_each_earlier_sweeps_best():
    configs = warm_configs([history(1e-3), history(1e-3), history(1e-5, seed=1)], SPACE)
    assert len(configs) == 2  # the second history's best repeats the first's
    assert abs(np.log(configs[0]["learning_rate"] / 1e-3)) < 0.5 and configs[1]["learning_rate"] < 3e-5


def test_each_history_is_ranked_within_itself_at_its_highest_step_with_enough_values():
    assert ranks([5.0, 1.0, 3.0]) == [1.0, 1 / 3, 2 / 3]
    view = prior([history(1e-3), history(1e-5, seed=1)])
    trials = view.study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 60 and len(complete) == 20  # each history at step 30; the rest left as bad examples
    assert max(t.value for t in complete) == 1.0 and min(t.value for t in complete) == 0.1


def test_a_history_trial_outside_this_space_is_left_out_and_only_shared_parameters_are_modelled():
    outside = PastTrial({"learning_rate": 0.5, "lora_rank": 16}, {30: 1.0}, 1.0)
    without_warmup = [PastTrial({k: v for k, v in t.params.items() if k != "warmup_ratio"}, t.values, t.best)
                      for t in history(1e-3).trials]  # fmt: skip
    view = prior([History("x", (outside, *without_warmup))])
    assert len(view.study.trials) == 30
    assert set(view.distributions) == {"learning_rate", "lora_rank"}  # no history has warmup_ratio
    assert set(view.sample()) == {"learning_rate", "lora_rank"}


def test_the_prior_proposes_where_the_history_did_well():
    high, low = prior([history(3e-3)]), prior([history(3e-5)])
    high_rates = [high.sample()["learning_rate"] for _ in range(30)]
    low_rates = [low.sample()["learning_rate"] for _ in range(30)]
    assert np.median(np.log10(high_rates)) - np.median(np.log10(low_rates)) > 1.0  # a decade apart, at least


def test_a_warm_started_searcher_tries_the_defaults_then_the_best_then_draws_from_the_prior(tmp_path):
    searcher = TPESearcher(SPACE, tmp_path / "study.journal", "s", 0, 5, histories=[history(1e-3)])
    assert searcher.suggest("t0") == SPACE.defaults()
    assert searcher.suggest("t1") == warm_configs([history(1e-3)], SPACE)[0]
    low = TPESearcher(SPACE, tmp_path / "low.journal", "s", 0, 5, histories=[history(3e-5)])
    low.suggest("t0"), low.suggest("t1")
    rates = [searcher.suggest(f"t{i}")["learning_rate"] for i in range(2, 22)]  # no own values yet: the prior
    low_rates = [low.suggest(f"t{i}")["learning_rate"] for i in range(2, 22)]
    assert np.median(np.log10(rates)) - np.median(np.log10(low_rates)) > 1.0


def test_a_searcher_without_histories_draws_no_prior():
    searcher = TPESearcher(SPACE, "study.journal", "s", 0, 2)
    assert searcher.make_sampler(0)._prior is None
