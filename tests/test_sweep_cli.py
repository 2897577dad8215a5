"""End to end through the CLI: a real Ray Tune + Optuna TPE + ASHA sweep on the tiny model."""

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

# The exported recipe reruns deterministically on CPU; allow for float summation order only.
REPRODUCE_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def swept(tiny_run):
    """The session's tiny sweep (tests/conftest.py) and what it printed."""
    return tiny_run, (tiny_run.parent / "sweep.out").read_text()


def test_run_directory_holds_every_record(swept):
    run_dir, stdout = swept
    for name in ("spec.yaml", "baseline.json", "trials.parquet", "study.journal", "best/recipe.yaml"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "best" / "adapter" / "adapter_model.safetensors").is_file()
    assert f"run directory: {run_dir}" in stdout
    lines = stdout.splitlines()
    baseline_line = next(i for i, line in enumerate(lines) if line.startswith("baseline: "))
    first_rung = next(i for i, line in enumerate(lines) if " step 4/16: objective" in line)
    assert baseline_line < first_rung  # the base model is measured before any trial
    assert "domain_exact_match" in lines[baseline_line] and "general_perplexity" in lines[baseline_line]
    assert any(line.startswith("best (test, 20 examples): ") for line in lines)
    assert any(line.startswith("trial time: ") and "engine overhead" in line for line in lines)
    where = lines.index(next(line for line in lines if line.startswith("where the time went: ")))
    phases = [line.split("  ")[1].strip() for line in lines[where + 1 :] if line.startswith("  ")]
    assert {"baseline", "Ray start", "trials", "exports", "held-out check", "other"} <= set(phases)
    assert "engine overhead" in next(line for line in lines[where:] if line.startswith("  trials"))
    spec = yaml.safe_load((run_dir / "spec.yaml").read_text())
    assert len(spec["spec_hash"]) == 16 and set(spec["data_sha256"]) >= {"domain_train", "domain_eval"}


def test_best_recipe_is_scored_on_the_test_split_with_a_confusion_matrix(swept):
    run_dir, _ = swept
    scores = json.loads((run_dir / "best" / "test_scores.json").read_text())
    assert scores["split"] == "test" and scores["examples"] == 20
    assert set(scores["base"]) >= {"domain_exact_match", "general_perplexity"}
    for model in ("base", "best"):  # the multiple-choice benchmark (lm-eval, a local task), scored at the end
        assert 0.0 <= scores[model]["benchmark_tiny_choice"] <= 1.0 and scores[model]["benchmark_tiny_choice_n"] == 20
        low, high = scores[model]["domain_exact_match_low"], scores[model]["domain_exact_match_high"]
        assert low <= scores[model]["domain_exact_match"] <= high and scores[model]["domain_exact_match_n"] == 20
    assert set(scores["paired"]) == {"domain", "benchmark_tiny_choice", "general_perplexity", "instruction_nll"}
    assert (
        scores["paired"]["domain"]["test"] == "mcnemar"
        and scores["paired"]["general_perplexity"]["test"] == "sign_flip"
    )
    assert scores["chance"]["majority"] >= scores["chance"]["uniform"] > 0
    assert scores["chance"]["paired"]["n"] == 20  # the best against the majority class, on the same rows
    matrix = scores["confusion"]
    assert set(matrix) == {"animal", "plant", "tool"}
    assert sum(sum(row.values()) for row in matrix.values()) == 20
    hits = sum(matrix[label][label] for label in matrix)
    assert hits / 20 == pytest.approx(scores["best"]["domain_exact_match"])


def test_parquet_has_a_row_for_every_rung_of_every_trial(swept):
    run_dir, _ = swept
    rows = pq.read_table(run_dir / "trials.parquet").to_pylist()
    trials = {}
    for row in rows:
        trials.setdefault(row["trial_id"], []).append(row)
    assert len(trials) == 6
    for trial_rows in trials.values():
        steps = [r["step"] for r in trial_rows]
        assert steps == list(range(4, steps[-1] + 1, 4)), steps  # every rung up to where it ended
        assert {r["status"] for r in trial_rows} in ({"completed"}, {"stopped"})
    stopped = [t for t in trials.values() if t[0]["status"] == "stopped"]
    assert stopped and all(t[0]["stop_reason"].startswith("asha: below the rung cutoff") for t in stopped)
    assert any(t[-1]["step"] == 16 for t in trials.values())
    for column in ("param_learning_rate", "domain_exact_match", "general_perplexity", "objective", "domain_lift"):
        assert all(r[column] is not None for r in rows), column


def test_first_trial_is_the_defaults_and_the_best_recipe_is_the_best_row(swept):
    run_dir, _ = swept
    rows = pq.read_table(run_dir / "trials.parquet").to_pylist()
    from hpo.tiny import TINY_SPACE

    defaults = {f"param_{k}": v["default"] for k, v in TINY_SPACE["parameters"].items()}
    assert any(all(r[k] == v for k, v in defaults.items()) for r in rows)
    best = yaml.safe_load((run_dir / "best" / "recipe.yaml").read_text())
    assert best["expected"]["objective"] == max(r["objective"] for r in rows)
    assert best["recipe"]["training"]["stop_at_step"] == best["expected"]["step"]
    assert best["provenance"]["trial_id"] == best["expected"]["trial_id"]
    best_row = next(
        r for r in rows if r["trial_id"] == best["expected"]["trial_id"] and r["step"] == best["expected"]["step"]
    )
    assert best["recipe"]["hyperparameters"]["learning_rate"] == best_row["param_learning_rate"]


def test_exported_recipe_reproduces_the_best_rung_standalone(swept, tmp_path):
    run_dir, _ = swept
    recipe = run_dir / "best" / "recipe.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "trainers.sft", str(recipe), "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = yaml.safe_load(recipe.read_text())["expected"]
    final = json.loads((tmp_path / "metrics.json").read_text())
    assert final["step"] == expected["step"]
    for metric in ("domain_exact_match", "general_perplexity", "instruction_nll", "train_loss"):
        assert final[metric] == pytest.approx(expected[metric], rel=REPRODUCE_TOLERANCE), metric
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


@pytest.fixture(scope="module")
def embedded_ray(tmp_path_factory) -> subprocess.CompletedProcess:
    """Ray started as a sweep starts it, in a fresh process without RAY_* settings."""
    probe = (
        "import os, ray\n"
        "from ray._raylet import AuthenticationMode, get_authentication_mode\n"
        "from hpo.run.sweep import start_ray\n"
        "start_ray(None)\n"
        "token = get_authentication_mode() == AuthenticationMode.TOKEN\n"
        "print(token, os.nice(0), ray.get(ray.remote(lambda: os.nice(0)).remote()))\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path_factory.mktemp("ray"), env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_embedded_ray_runs_trials_at_the_drivers_priority(embedded_ray):
    """Ray's default worker niceness (15) trained measurably slower than the driver."""
    driver, worker = embedded_ray.stdout.split()[-2:]
    assert worker == driver


def test_embedded_ray_keeps_token_auth_without_a_warning(embedded_ray):
    """Ray's "Token authentication is enabled" warning broke into every sweep's live view."""
    token = embedded_ray.stdout.split()[-3]
    assert token == "True"  # still on, as Ray sets up a new local cluster
    assert "Token authentication" not in embedded_ray.stdout + embedded_ray.stderr
