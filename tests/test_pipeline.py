"""End to end through the CLI: the tiny pipeline, full-rank CPT, then LoRA SFT, then RFT from the SFT adapter.

Every stage is a real Ray Tune + TPE + ASHA sweep; each one's exported recipe reruns
standalone with `python -m trainers`.
"""

import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from trainers.__main__ import main as rerun

# Merging an adapter into the weights changes float summation order only.
MERGE_TOLERANCE = 1e-4
REPRODUCE_TOLERANCE = 1e-5
STAGE_METRICS = {
    "cpt": ("domain_perplexity", "general_perplexity"),
    "sft": ("domain_exact_match", "general_perplexity", "instruction_nll"),
    "rft": ("reward_mean", "positive_reward_rate", "train_kl", "train_completion_length", "general_perplexity"),
}


@pytest.fixture(scope="module")
def chained(tiny_source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("chained") / "tiny"
    shutil.copytree(tiny_source, folder)
    document = yaml.safe_load((folder / "pipeline.yaml").read_text())
    document["budget"] = {"trials": 1, "concurrency": 1}  # a trial a stage: the chain is what is tested
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "sweep", "pipeline.yaml", "--quiet"], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (folder / "runs").iterdir()
    return run_dir, done.stdout


def test_the_run_directory_keeps_every_stage_and_the_chain(chained):
    run_dir, stdout = chained
    chain = yaml.safe_load((run_dir / "chain.yaml").read_text())
    assert [link["stage"] for link in chain["stages"]] == ["cpt", "sft", "rft"]
    assert chain["final_recipe"] == "stages/rft/best/recipe.yaml"
    for link in chain["stages"]:
        stage_dir = run_dir / link["run_dir"]
        for name in ("spec.yaml", "baseline.json", "trials.parquet", "best/recipe.yaml"):
            assert (stage_dir / name).is_file(), (link["stage"], name)
    assert (run_dir / "pipeline.yaml").is_file()
    shown = [line for line in stdout.splitlines() if line.startswith(("== stage", "baseline:", "best (validation)"))]
    heads = ["== stage cpt (full) ==", "== stage sft (lora) ==", "== stage rft (lora) =="]
    assert [line.split(":")[0] for line in shown] == [
        h for head in heads for h in (head, "baseline", "best (validation)")
    ]


def test_each_stage_starts_from_the_one_before(chained):
    run_dir, _ = chained
    chain = yaml.safe_load((run_dir / "chain.yaml").read_text())
    cpt, sft, rft = chain["stages"]
    cpt_best = str(run_dir / "stages" / "cpt" / "best" / "adapter")
    sft_best = str(run_dir / "stages" / "sft" / "best" / "adapter")
    assert sft["started_from"] == {"model": cpt_best, "adapters": []}  # a full-rank stage hands on its model
    assert rft["started_from"] == {"model": cpt_best, "adapters": [sft_best]}  # a LoRA stage, its adapter


def test_rft_starts_from_the_sft_best_adapter(chained):
    """The RFT stage's base model is the SFT stage's best rung: same answers, same general metrics."""
    run_dir, _ = chained
    sft_best = yaml.safe_load((run_dir / "stages" / "sft" / "best" / "recipe.yaml").read_text())["expected"]
    rft_base = json.loads((run_dir / "stages" / "rft" / "baseline.json").read_text())
    # exact-match reward on the same eval prompts: its positive rate is the SFT exact match
    assert rft_base["metrics"]["positive_reward_rate"] == sft_best["domain_exact_match"]
    for metric in ("general_perplexity", "instruction_nll"):
        assert rft_base["metrics"][metric] == pytest.approx(sft_best[metric], rel=MERGE_TOLERANCE), metric
    assert rft_base["start_adapters"] == [str(run_dir / "stages" / "sft" / "best" / "adapter")]
    sft_predictions = json.loads((run_dir / "stages" / "sft" / "best" / "adapter" / "predictions.json").read_text())
    assert rft_base["predictions"]["predictions"] == sft_predictions["predictions"]


@pytest.mark.parametrize("stage", ["cpt", "sft", "rft"])
def test_parquet_has_the_stage_metrics_for_every_rung(chained, stage):
    run_dir, _ = chained
    rows = pq.read_table(run_dir / "stages" / stage / "trials.parquet").to_pylist()
    assert len({r["trial_id"] for r in rows}) == 1  # the chained fixture's budget
    assert {r["status"] for r in rows} <= {"completed", "stopped"}
    for column in (*STAGE_METRICS[stage], "objective", "domain_lift", "general_regression"):
        assert all(r[column] is not None for r in rows), (stage, column)
    assert any(r["step"] == 8 for r in rows)


@pytest.mark.parametrize("stage", ["cpt", "sft", "rft"])
def test_each_exported_recipe_reruns_standalone(chained, stage, tmp_path):
    run_dir, _ = chained
    recipe = run_dir / "stages" / stage / "best" / "recipe.yaml"
    assert rerun([str(recipe), "--out", str(tmp_path)]) == 0
    expected = yaml.safe_load(recipe.read_text())["expected"]
    final = json.loads((tmp_path / "metrics.json").read_text())
    assert final["step"] == expected["step"]
    for metric in STAGE_METRICS[stage]:
        assert final[metric] == pytest.approx(expected[metric], rel=REPRODUCE_TOLERANCE), (stage, metric)
    weights = "model.safetensors" if stage == "cpt" else "adapter_model.safetensors"
    assert (tmp_path / "adapter" / weights).is_file()
