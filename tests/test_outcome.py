"""The printed metric lines: every probe figure with its interval, whatever stage's probe made it."""

from hpo.judge.outcome import format_metrics


def estimate(name: str, value: float) -> dict[str, float]:
    return {name: value, f"{name}_low": value - 0.1, f"{name}_high": value + 0.1, f"{name}_n": 60.0}


def test_every_probe_figure_is_printed_with_its_interval_and_nothing_else():
    metrics = {
        "objective": 0.25,
        "domain_lift": 0.3,
        **estimate("preference_accuracy", 0.7),  # a stage's own probe figure, named as it likes
        **estimate("reward_mean", 0.2),
        **estimate("general_perplexity", 30.0),
        "domain_majority": 0.34,  # a chance figure: no interval, still a domain figure
        "train_loss": 1.2,  # the training window's, not a probe's
        "step": 8,
    }
    line = format_metrics("best", metrics)
    assert line == (
        "best: objective 0.2500, preference_accuracy 0.7000 [0.600-0.800], reward_mean 0.2000 [0.100-0.300], "
        "general_perplexity 30.0000 [29.900-30.100], domain_majority 0.3400"
    )
