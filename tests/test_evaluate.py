from pathlib import Path

import pytest

from hpo.judge.evaluate import UNPARSED, confusion, format_confusion


def test_confusion_matrix_counts_unparsed_answers_separately():
    matrix = confusion(["a", "a", "b"], ["a", "maybe a", "a"], ["a", "b"])
    assert matrix == {"a": {"a": 1, "b": 0, UNPARSED: 1}, "b": {"a": 1, "b": 0, UNPARSED: 0}}
    assert format_confusion(matrix).splitlines()[0].split()[-1] == UNPARSED


def test_an_lm_eval_local_task_scores_the_tiny_model_as_its_loglikelihoods_say(tiny):
    """lm-eval's multiple-choice accuracy, per example, equals the argmax of each choice's log-likelihood
    computed here by hand; the task's data file is found relative to its YAML."""
    import json

    import torch
    import yaml

    from hpo.config.sweep_file import load_sweep
    from trainers.harness import run_benchmarks
    from trainers.models import load_base
    from trainers.probes import _sum_nll
    from trainers.recipe import Benchmark

    recipe = load_sweep(tiny / "sweep.yaml").recipe
    model, tokenizer = load_base(recipe.model)
    model.eval()
    questions = [("Which is a fruit?", ["stone", "apple", "car"]), ("Which flies?", ["bird", "rock", "pond"])]
    rows = [{"question": q, "choices": c, "answer": a} for q, c in questions for a in range(len(c))]
    (tiny / "mc").mkdir()
    (tiny / "mc" / "data").mkdir()
    (tiny / "mc" / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = yaml.safe_load((tiny / "lm_eval_tasks" / "tiny_choice.yaml").read_text())
    task.update(task="mc_rows", dataset_kwargs={"data_files": {"test": "data/rows.jsonl"}})
    (tiny / "mc" / "mc.yaml").write_text(yaml.safe_dump(task))

    def likeliest(row) -> int:
        context = "{}\nA. {}\nB. {}\nC. {}\nAnswer:".format(row["question"].strip(), *row["choices"])
        context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        scores = []
        for letter in "ABC":
            whole = tokenizer(context + " " + letter, add_special_tokens=False)["input_ids"]
            scores.append(-_sum_nll(model, torch.tensor([whole]), len(context_ids))[0])
        return max(range(3), key=scores.__getitem__)

    result = run_benchmarks(model, tokenizer, (Benchmark("mc_rows", include=str(tiny / "mc" / "mc.yaml")),))["mc_rows"]
    assert result["scores"] == [float(likeliest(row) == row["answer"]) for row in rows]
    assert result["estimate"].value == pytest.approx(2 / 6)  # each question covers every answer: one of three right
    assert result["estimate"].n == 6 and result["estimate"].low < 1 / 3 < result["estimate"].high


def test_the_base_models_held_out_figures_are_reused_until_a_file_they_depend_on_changes(tiny_run, tmp_path, monkeypatch):
    """A second held-out check over the same model, test split and benchmark reads the base model's
    figures from the cache, the same figures; a changed test split is scored again."""
    import json
    import shutil

    import yaml

    from hpo.judge.evaluate import evaluate_best

    monkeypatch.setenv("FORGE_HPO_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    first = evaluate_best(run_dir)
    second = evaluate_best(run_dir)
    assert first["base_from_cache"] == [] and second["base_from_cache"] == ["domain", "benchmark_tiny_choice"]
    assert second["base"] == first["base"] and second["paired"] == first["paired"]
    assert json.loads((run_dir / "best" / "test_scores.json").read_text())["base_from_cache"] == second["base_from_cache"]

    recipe_file = run_dir / "best" / "recipe.yaml"
    document = yaml.safe_load(recipe_file.read_text())
    test_split = Path(document["recipe"]["data"]["domain_test"])
    rows = test_split.read_text().splitlines(keepends=True)
    (tmp_path / "test.jsonl").write_text("".join(rows + rows[:1]))  # one more row
    document["recipe"]["data"]["domain_test"] = str(tmp_path / "test.jsonl")
    recipe_file.write_text(yaml.safe_dump(document, sort_keys=False))
    third = evaluate_best(run_dir)
    assert third["base_from_cache"] == ["benchmark_tiny_choice"] and third["examples"] == first["examples"] + 1
