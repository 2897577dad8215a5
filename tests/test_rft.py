"""RFT with GRPO on the tiny model: the adapter learns from the reward, the objective, and the gate both ways."""

import dataclasses

import pytest
import ray
import yaml
from safetensors.torch import load_file

from hpo.cli import main
from hpo.config.sweep_file import load_sweep
from hpo.search.objective import FAILING_OBJECTIVE, score
from trainers.rft import train
from trainers.stages import STAGES

# Gate rewards, written next to the sweep file (the reward's import root): one the base
# never earns, one it always earns (whatever the tiny model's answers, which vary with the
# library versions that trained it).
GATE_REWARDS = """
def never(prompts, completions, **kwargs):
    return [-1.0 for _ in completions]


def always(prompts, completions, **kwargs):
    return [1.0 for _ in completions]
"""


def with_reward(tiny, callable_name: str, **changes):
    (tiny / "gate_rewards.py").write_text(GATE_REWARDS)
    sweep = tiny / "sweep_rft.yaml"
    document = yaml.safe_load(sweep.read_text())
    document["task"]["reward"] = {"callable": callable_name}
    document.update(changes)
    sweep.write_text(yaml.safe_dump(document))
    return sweep


def test_grpo_changes_every_lora_weight_and_reports_the_rft_metrics(tiny):
    recipe = load_sweep(tiny / "sweep_rft.yaml").recipe
    recipe = recipe.with_hyperparameters({"learning_rate": 1e-2, "num_generations": 4, "lora_rank": 4, "lora_alpha": 8})
    recipe = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, max_steps=8, rung_interval=4))
    rungs = []

    def report(step, metrics, checkpoint):
        rungs.append((step, metrics, load_file(checkpoint / "adapter_model.safetensors")))

    final = train(recipe, report)
    assert [step for step, *_ in rungs] == [4, 8] and final["final"] == 1.0
    first, last = rungs[0][2], rungs[-1][2]
    for name in last:
        assert not (first[name] == last[name]).all(), f"{name} did not change between rungs"
    for key in ("reward_mean", "positive_reward_rate", "response_length", "general_perplexity"):
        assert key in final, key  # held-out probes
    for key in ("train_reward_mean", "train_kl", "train_completion_length", "train_positive_rate"):
        assert key in final, key  # the rung window of GRPO's own statistics
    assert final["train_kl"] > 0  # the adapter moved away from the reference (itself disabled)
    assert final["positive_reward_rate"] == pytest.approx((final["reward_mean"] + 1) / 2)  # +1/-1 reward


def test_rft_objective_is_the_reward_lift_with_a_kl_limit():
    base = {"reward_mean": -0.2, "general_perplexity": 10.0}
    passing = score(
        {"reward_mean": 0.4, "general_perplexity": 11.0, "train_kl": 0.1},
        base,
        1.0,
        0.5,
        domain=STAGES["rft"].domain_metric(None),  # the mean reward whatever the scorer
        max_kl=0.5,
    )
    assert passing["domain_lift"] == pytest.approx(0.6)
    assert passing["objective"] == pytest.approx(0.6 - 0.1) and passing["violation"] == ""
    failing = score(
        {"reward_mean": 0.9, "general_perplexity": 10.0, "train_kl": 0.8},
        base,
        1.0,
        0.5,
        domain=STAGES["rft"].domain_metric(None),  # the mean reward whatever the scorer
        max_kl=0.5,
    )
    assert failing["objective"] == FAILING_OBJECTIVE and failing["violation"] == "kl 0.8 > limit 0.5"
    assert failing["domain_lift"] == pytest.approx(1.1)  # components kept for the Pareto front


def test_the_gate_refuses_rft_on_a_base_without_positive_rewards(tiny, capsys):
    sweep = with_reward(tiny, "gate_rewards:never")
    assert main(["sweep", str(sweep), "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert "baseline: reward_mean -1.0000 [-1.000--1.000], positive_reward_rate 0.0000 [0.000-0.2" in out  # shown first
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: {sweep}: task.reward: the base model's positive-reward rate must be >= 0.05")
    assert "run SFT first" in line and "--allow-low-reward" in line
    assert not (tiny / "runs").exists()  # no run directory, no trials
    assert not ray.is_initialized()


def test_the_gate_warns_near_all_positive(tiny, capsys):
    sweep = with_reward(tiny, "gate_rewards:always")
    assert main(["sweep", str(sweep), "--baseline-only"]) == 0
    lines = capsys.readouterr().out.splitlines()
    baseline = next(i for i, line in enumerate(lines) if line.startswith("baseline: "))
    warning = next(i for i, line in enumerate(lines) if line.startswith("warning: "))
    assert baseline < warning and "positive_reward_rate 1.0000" in lines[baseline]
    assert "diminishing returns" in lines[warning]
    assert not (tiny / "runs").exists()


def test_the_override_flag_lets_a_refused_base_through(tiny, capsys):
    sweep = with_reward(tiny, "gate_rewards:never")
    assert main(["sweep", str(sweep), "--baseline-only", "--allow-low-reward"]) == 0
    assert "warning: the base model's positive-reward rate is 0.000" in capsys.readouterr().out
