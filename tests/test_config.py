"""Bad sweep files: one line per problem naming file and key, all at once, exit 2, no side effects."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

from hpo.cli import main
from hpo.config.errors import InputError
from hpo.config.sweep_file import load_sweep


def edit(folder: Path, change) -> Path:
    sweep = folder / "sweep.yaml"
    document = yaml.safe_load(sweep.read_text())
    change(document)
    sweep.write_text(yaml.safe_dump(document))
    return sweep


def test_the_tiny_example_is_valid(tiny):
    config = load_sweep(tiny / "sweep.yaml")
    assert config.recipe.labels == ("animal", "plant", "tool")
    assert config.budget.trials == 6
    assert Path(config.recipe.data.domain_train).is_absolute()
    assert config.spec_hash() == load_sweep(tiny / "sweep.yaml").spec_hash()


def set_key(path: str, value):
    def change(document):
        *parents, last = path.split(".")
        node = document
        for part in parents:
            node = node[part]
        node[last] = value

    return change


def drop_key(path: str):
    def change(document):
        *parents, last = path.split(".")
        node = document
        for part in parents:
            node = node[part]
        del node[last]

    return change


CASES = {
    "unknown top-level key": (
        set_key("budgett", {"trials": 2}),
        "budgett: unknown key 'budgett' (did you mean 'budget'?)",
    ),
    "unknown nested key": (
        set_key("scheduler.max_step", 8),
        "scheduler.max_step: unknown key 'max_step' (did you mean 'max_steps'?)",
    ),
    "missing required key": (drop_key("budget.trials"), "budget.trials: is required"),
    "number out of range": (set_key("budget.concurrency", 0), "budget.concurrency: must be >= 1, got 0"),
    "wrong type": (set_key("budget.trials", "many"), "budget.trials: must be an integer, got 'many'"),
    "rung interval over max steps": (
        set_key("scheduler.rung_interval", 64),
        "scheduler.rung_interval: must be <= scheduler.max_steps",
    ),
    "missing data file": (
        set_key("data.domain_train", "data/nope.jsonl"),
        "data.domain_train: file not found: data/nope.jsonl",
    ),
    "unknown stage": (set_key("stage", "ppo"), "stage: must be one of"),
    "search space not found": (set_key("search_space", "sft_lorra"), "search_space: not found: sft_lorra"),
    "missing model path": (set_key("model", "./no-such-model"), "model: path not found: ./no-such-model"),
    "reduction factor of one": (set_key("scheduler.reduction_factor", 1), "scheduler.reduction_factor: must be > 1"),
    "unknown wandb mode": (
        set_key("tracking", {"wandb": "cloud"}),
        "tracking.wandb: must be one of offline, online, disabled",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_sweep_file(tiny, case, capsys):
    change, message = CASES[case]
    sweep = edit(tiny, change)
    assert main(["sweep", str(sweep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith(f"error: {sweep}: ") and message in line for line in err), err
    assert not (tiny / "runs").exists()
    assert not ray.is_initialized()


def test_every_problem_is_reported_at_once(tiny, capsys):
    def change(document):
        document["budget"]["concurrency"] = 0
        document["scheduler"]["max_step"] = 8
        document["data"]["general_probe"] = "missing.jsonl"

    sweep = edit(tiny, change)
    assert main(["validate", str(sweep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3, err


def test_broken_yaml_names_the_line(tiny, capsys):
    sweep = tiny / "sweep.yaml"
    sweep.write_text("name: x\nbudget: {trials: 2\n")
    assert main(["validate", str(sweep)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {sweep}: broken YAML at line")


def write_rows(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"prompt": "Classify", "completion": "mineral"}], "row 1: label 'mineral' is not in the label set"),
        ([], "the dataset is empty"),
        ([{"prompt": "Classify"}], "row 1: missing string field 'completion'"),
        (["{not json"], "line 1: not valid JSON"),
    ],
)
def test_bad_domain_data(tiny, rows, message):
    write_rows(tiny / "data" / "domain_train.jsonl", rows)
    with pytest.raises(InputError) as caught:
        load_sweep(tiny / "sweep.yaml")
    (line,) = caught.value.problems
    assert "data.domain_train" in line and message in line


def test_bad_search_space_is_reported_with_its_own_file(tiny):
    space = tiny / "space.yaml"
    space.write_text(space.read_text().replace("low: 0.0001", "low: 0.0"))
    with pytest.raises(InputError) as caught:
        load_sweep(tiny / "sweep.yaml")
    assert any(line.startswith(f"{space}: parameters.learning_rate.low") for line in caught.value.problems)


def test_cli_exit_code_and_help(tiny):
    sweep = edit(tiny, set_key("budget.trials", 0))
    done = subprocess.run([sys.executable, "-m", "hpo", "validate", str(sweep)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "budget.trials: must be >= 1, got 0" in done.stderr
    for command in (["--help"], ["sweep", "--help"], ["validate", "--help"], ["export", "--help"]):
        shown = subprocess.run([sys.executable, "-m", "hpo", *command], capture_output=True, text=True)
        assert shown.returncode == 0 and "usage: hpo" in shown.stdout


def test_export_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "spec.yaml not found" in capsys.readouterr().err
