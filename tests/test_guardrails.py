"""The field's guardrails as pure functions, and how the engine applies them (config, trial, record)."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from hpo.cli import main
from hpo.config.errors import InputError
from hpo.config.plan import LARGE_SET, MAX_DUPLICATION, SMALL_SET, training_plan, warmup_before_first_rung
from hpo.config.service import service_flags, service_values
from hpo.config.sweep_file import Objective, load_sweep
from hpo.results.rundir import TrialTable
from hpo.run import trial
from hpo.run.pipeline import check_start
from hpo.run.rung_stop import reward_blowup, rung_stop_reason
from hpo.run.sweep import stop_reason
from hpo.search.objective import FAILING_OBJECTIVE
from trainers.rft import rft_gate


def test_small_sets_are_duplicated_and_train_two_epochs():
    plan = training_plan(examples=300, rows_per_step=4, warmup_ratio=0.1)
    assert plan.epochs == 2 and plan.duplication == 4  # ceil(1000 / 300), at most MAX_DUPLICATION
    assert plan.max_steps == 300 * 4 * 2 / 4
    assert training_plan(examples=600, rows_per_step=4, warmup_ratio=0.1).duplication == 2
    assert training_plan(examples=10, rows_per_step=4, warmup_ratio=0.1).duplication == MAX_DUPLICATION


def test_mid_sets_train_two_epochs_and_large_sets_one():
    assert training_plan(SMALL_SET, 8, 0.1).duplication == 1
    mid = training_plan(2_000, rows_per_step=8, warmup_ratio=0.1)
    assert (mid.epochs, mid.duplication, mid.max_steps) == (2, 1, 500)
    large = training_plan(LARGE_SET + 1, rows_per_step=8, warmup_ratio=0.1)
    assert (large.epochs, large.duplication) == (1, 1)


def test_user_overrides_win_and_warmup_always_ends_inside_the_schedule():
    plan = training_plan(300, rows_per_step=4, warmup_ratio=0.1, epochs=3, duplication=1)
    assert (plan.epochs, plan.duplication, plan.max_steps) == (3, 1, 225)
    for examples in (5, 50, 500, 5_000, 50_000):
        plan = training_plan(examples, rows_per_step=8, warmup_ratio=0.3)
        assert 0 < plan.warmup_steps < plan.max_steps, plan  # the learning rate reaches its peak
    with pytest.raises(ValueError, match="examples >= 1"):
        training_plan(0, 8, 0.1)


def test_warmup_past_the_first_rung_is_flagged():
    assert warmup_before_first_rung(0.3, 60, first_rung=20) == ""
    line = warmup_before_first_rung(0.3, 60, first_rung=15)
    assert "warmup up to 18 steps" in line and "first ASHA rung at step 15" in line


def test_rft_gate_refuses_a_base_without_positive_rewards_and_says_what_to_do():
    refusal, warning = rft_gate(0.02, prompts=50, allow_low=False)
    assert "must be >= 0.05 for RFT, got 0.020 on 50 held-out prompts" in refusal
    assert "run SFT first" in refusal and "--allow-low-reward" in refusal and warning == ""
    refusal, warning = rft_gate(0.02, prompts=50, allow_low=True)
    assert refusal == "" and "runs anyway" in warning


def test_rft_gate_warns_of_diminishing_returns_near_all_positive():
    assert rft_gate(0.5, 50, allow_low=False) == ("", "")
    refusal, warning = rft_gate(0.98, 50, allow_low=False)
    assert refusal == "" and "diminishing returns" in warning


def test_the_override_also_comes_from_the_sweep_file(tiny):
    config = load_sweep(tiny / "sweep_rft.yaml")
    with pytest.raises(InputError) as caught:
        check_start(config, {"positive_reward_rate": 0.0}, allow_low_reward=False)
    (line,) = caught.value.problems
    assert line.startswith(f"{config.path}: task.reward: ")
    assert check_start(config, {"positive_reward_rate": 0.0}, allow_low_reward=True)
    allowed = dataclasses.replace(config, guardrails=dataclasses.replace(config.guardrails, allow_low_reward=True))
    assert "runs anyway" in check_start(allowed, {"positive_reward_rate": 0.0}, allow_low_reward=False)[0]


def rung(reward: float, length: float, kl: float = 0.01) -> dict:
    return {"train_reward_mean": reward, "train_completion_length": length, "train_kl": kl}


def test_reward_spiking_while_length_collapses_is_a_blowup():
    reason = reward_blowup(rung(0.9, 2.0), rung(0.1, 12.0), min_length_ratio=0.5)
    assert reason.startswith("reward blow-up: training reward 0.1 -> 0.9") and "12 -> 2 tokens" in reason
    assert reward_blowup(rung(0.9, 8.0), rung(0.1, 12.0), 0.5) == ""  # shorter, not collapsed
    assert reward_blowup(rung(0.0, 2.0), rung(0.1, 12.0), 0.5) == ""  # reward did not rise
    assert reward_blowup(rung(0.9, 2.0), None, 0.5) == ""  # nothing to compare the first rung with
    assert reward_blowup(rung(0.9, 2.0), rung(0.1, 12.0), None) == ""  # turned off


def test_a_kl_over_its_limit_stops_the_rung_with_its_reason():
    assert rung_stop_reason(rung(0.5, 5.0, kl=0.8), rung(0.4, 5.0), max_kl=0.5, min_length_ratio=0.5) == (
        "kl 0.8 > limit 0.5"
    )
    assert rung_stop_reason(rung(0.5, 5.0, kl=0.2), rung(0.4, 5.0), max_kl=0.5, min_length_ratio=0.5) == ""


def test_service_ranges_are_flagged_never_clamped(tiny):
    flags = service_flags({"epochs": 8, "learning_rate": 3e-4, "warmup_steps": 10})
    assert flags == [
        "epochs 8 is outside the service range 1..5 (kept as is, not clamped)",
        "learning_rate 0.0003 is outside the service range 1e-06..0.0001 (kept as is, not clamped)",
    ]
    assert service_flags({"epochs": 2, "learning_rate": 1e-5, "warmup_steps": 0}) == []
    recipe = load_sweep(tiny / "sweep.yaml").recipe  # 120 rows, batch 8, mixing 0.5, 16 steps
    values = service_values(recipe, examples=120)
    assert values == {"epochs": round(16 * 8 * 0.5 / 120, 2), "learning_rate": 1e-5, "warmup_steps": 3}


def edit(path: Path, **changes) -> Path:
    document = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path.write_text(yaml.safe_dump(document))
    return path


def test_epochs_auto_sizes_the_schedule_from_the_data(tiny, capsys):
    sweep = edit(tiny / "sweep.yaml", training__epochs="auto", scheduler__max_steps=None, scheduler__rung_interval=None)
    config = load_sweep(sweep)
    # 120 rows < 1k: 4 copies x 2 epochs; a step holds 8 x 0.5 (the space's default mixing ratio) domain rows
    assert (config.plan.duplication, config.plan.epochs, config.plan.max_steps) == (4, 2, 240)
    assert config.scheduler.max_steps == config.recipe.training.max_steps == 240
    assert config.recipe.training.duplication == 4
    assert 1 <= config.scheduler.rung_interval < 240
    assert main(["validate", str(sweep)]) == 0
    assert "training plan: 120 examples x 4 copies x 2 epochs = 240 steps" in capsys.readouterr().out


def test_epochs_and_max_steps_together_is_an_error(tiny):
    sweep = edit(tiny / "sweep.yaml", training__epochs=3)
    with pytest.raises(InputError) as caught:
        load_sweep(sweep)
    assert any("scheduler.max_steps: give scheduler.max_steps or training.epochs" in p for p in caught.value.problems)
    sweep = edit(tiny / "sweep.yaml", training__epochs="many", scheduler__max_steps=None)
    with pytest.raises(InputError) as caught:
        load_sweep(sweep)
    assert any("training.epochs: must be auto or an integer >= 1, got 'many'" in p for p in caught.value.problems)


def test_service_compatible_sweeps_flag_ranges_outside_the_service(tiny, capsys):
    sweep = edit(tiny / "sweep.yaml", guardrails__service_compatible=True)
    assert main(["validate", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "learning_rate 0.0001..0.5 reaches outside the service range 1e-06..0.0001" in out
    # the tiny defaults: LR 1e-3, and 16 steps x 8 rows x 0.5 mixing over 120 rows = 0.53 epochs
    assert "the first trial: epochs 0.53 is outside the service range 1..5" in out
    assert "the first trial: learning_rate 0.001 is outside the service range" in out


class FakeTune:
    """Stands in for ray.tune inside hpo.run.trial: records what the trial reports."""

    def __init__(self):
        self.results = []

    def report(self, metrics, checkpoint=None):
        self.results.append(metrics)

    @staticmethod
    def get_checkpoint():
        return None  # a fresh trial: nothing to resume from

    class Checkpoint:
        @staticmethod
        def from_directory(path):
            return path


def test_a_guardrail_ends_the_trial_and_the_record_says_why(tiny, monkeypatch, tmp_path):
    config = load_sweep(tiny / "sweep_rft.yaml")
    rungs = [(4, rung(0.1, 6.0, kl=0.1)), (8, rung(0.2, 6.0, kl=0.9)), (12, rung(0.3, 6.0, kl=0.1))]
    answers = []

    class Trainer:
        @staticmethod
        def train(recipe, report, resume_from=None):
            for step, metrics in rungs:
                metrics = {**metrics, "reward_mean": 0.5, "general_perplexity": 2.0, "step": step, "final": 0.0}
                answers.append(report(step, metrics, tmp_path))
                if answers[-1]:
                    return

    fake = FakeTune()
    monkeypatch.setattr(trial, "tune", fake)
    monkeypatch.setattr(trial, "trainer_for", lambda stage: Trainer)
    baseline = {"reward_mean": 0.0, "general_perplexity": 2.0}
    trial.run_trial({}, config.recipe, baseline, Objective(max_kl=0.5, min_length_ratio=0.5))
    assert answers == [False, True]  # the trainer was told to stop at the second rung
    last = fake.results[-1]
    assert last["objective"] == FAILING_OBJECTIVE and last["final"] == 1.0
    assert last["violation"] == "kl 0.9 > limit 0.5"

    table = TrialTable(tmp_path / "trials.parquet")
    for result in fake.results:
        table.add_result("t1", {}, result)
    table.finish("t1", *stop_reason(type("ASHA", (), {"stopped_at": {}})())("t1", last))
    assert table.table().to_pylist()[-1]["stop_reason"] == "guardrail: kl 0.9 > limit 0.5"
    assert table.table().to_pylist()[-1]["status"] == "stopped"


def test_a_failing_reward_ends_the_trial_as_an_error(tiny, monkeypatch, tmp_path):
    from trainers.scorers import ScoringError

    class Trainer:
        @staticmethod
        def train(recipe, report, resume_from=None):
            report(4, {"reward_mean": 0.5, "general_perplexity": 2.0, "step": 4, "final": 0.0}, tmp_path)
            raise ScoringError("reward endpoint http://x failed 3 times", step=4)

    fake = FakeTune()
    monkeypatch.setattr(trial, "tune", fake)
    monkeypatch.setattr(trial, "trainer_for", lambda stage: Trainer)
    recipe = load_sweep(tiny / "sweep_rft.yaml").recipe
    trial.run_trial({}, recipe, {"reward_mean": 0.0, "general_perplexity": 2.0}, Objective())
    last = fake.results[-1]
    assert last["step"] == 5  # its own row: the reported rung at step 4 is kept
    assert last["failed"] == 1.0 and last["objective"] == FAILING_OBJECTIVE
    status = stop_reason(type("ASHA", (), {"stopped_at": {}})())("t1", last)
    assert status == ("error", "reward endpoint http://x failed 3 times")
