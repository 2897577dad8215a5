"""Tests for the LCBench surrogate reader (benchmarks/search/lcbench.py).

Skipped as a whole when onnxruntime is not installed or the LCBench data
folder is not available, so the suite still runs on machines without them.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

# make the repository root importable when pytest is run without `python -m`

from benchmarks.search.lcbench import (  # noqa: E402
    EPOCHS,
    HYPERPARAMETERS,
    N_EPOCHS,
    TARGETS,
    LCBench,
    default_path,
)

if not (default_path() / "model.onnx").is_file():
    pytest.skip(f"LCBench data not found at {default_path()}", allow_module_level=True)

DEV_TASKS = ["3945", "7593", "34539", "126025", "126026", "146212", "167104", "167149"]
REASONABLE = {
    "batch_size": 91,
    "learning_rate": 0.0031622777,
    "momentum": 0.545,
    "weight_decay": 0.050005,
    "num_layers": 3,
    "max_units": 256,
    "max_dropout": 0.5,
}


@pytest.fixture(scope="module")
def bench() -> LCBench:
    return LCBench()


def random_configs(bench: LCBench, n: int, seed: int) -> list[dict]:
    """Sample configs the way ConfigSpace would (log-uniform where the space says log)."""
    rng = np.random.default_rng(seed)
    configs = []
    for _ in range(n):
        config = {}
        for name, spec in bench.space.items():
            lo, hi = spec["lower"], spec["upper"]
            if spec["log"]:
                value = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            else:
                value = float(rng.uniform(lo, hi))
            if spec["type"] == "int":
                value = int(min(max(round(value), lo), hi))
            config[name] = value
        configs.append(config)
    return configs


def test_metadata(bench: LCBench) -> None:
    assert len(bench.task_ids) == 34
    assert len(set(bench.task_ids)) == 34
    assert set(DEV_TASKS) <= set(bench.task_ids)
    assert "167083" not in bench.task_ids  # in encoding.json, but not in the v1.0 space
    assert tuple(bench.space) == HYPERPARAMETERS
    logs = {name: spec["log"] for name, spec in bench.space.items()}
    assert logs == {
        "batch_size": True,
        "learning_rate": True,
        "momentum": False,
        "weight_decay": False,
        "num_layers": False,
        "max_units": True,
        "max_dropout": False,
    }
    assert bench.space["batch_size"]["type"] == "int"
    assert (bench.space["batch_size"]["lower"], bench.space["batch_size"]["upper"]) == (16, 512)
    assert (bench.fidelity["lower"], bench.fidelity["upper"]) == (1, N_EPOCHS)
    assert list(EPOCHS) == list(range(1, 53))


def test_curve_shape_and_keys(bench: LCBench) -> None:
    curve = bench.curve("3945", REASONABLE)
    assert set(TARGETS) <= set(curve)
    for name, values in curve.items():
        assert values.shape == (N_EPOCHS,), name
        assert np.all(np.isfinite(values)), name


@pytest.mark.parametrize("task", DEV_TASKS)
def test_reasonable_config_learns_and_time_increases(bench: LCBench, task: str) -> None:
    curve = bench.curve(task, REASONABLE)
    assert np.all(np.diff(curve["time"]) > 0)
    assert curve["time"][0] > 0
    acc = curve["val_accuracy"]
    assert acc[-1] > acc[0]
    assert 10.0 < acc[-1] <= 100.0


def test_value_ranges_on_random_configs(bench: LCBench) -> None:
    configs = random_configs(bench, 40, seed=0)
    for task in bench.task_ids:
        curves = bench.curves(task, configs)
        assert np.all((curves["val_accuracy"] >= 0) & (curves["val_accuracy"] <= 100)), task
        for name in ("val_balanced_accuracy", "test_balanced_accuracy"):
            assert np.all((curves[name] >= 0) & (curves[name] <= 1)), (task, name)
        for name in ("val_cross_entropy", "test_cross_entropy"):
            assert np.all(curves[name] >= 0), (task, name)
        assert np.all(curves["time"] > 0), task
        assert np.all(np.diff(curves["time_cummax"], axis=1) >= 0), task
        assert np.all(curves["time_cummax"] >= curves["time"]), task


def test_batched_equals_single(bench: LCBench) -> None:
    configs = random_configs(bench, 12, seed=1)
    batched = bench.curves("167149", configs)
    for i, config in enumerate(configs):
        single = bench.curve("167149", config)
        for name in single:
            assert batched[name].shape == (len(configs), N_EPOCHS)
            np.testing.assert_allclose(batched[name][i], single[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_empty_batch(bench: LCBench) -> None:
    curves = bench.curves("3945", [])
    assert all(v.shape == (0, N_EPOCHS) for v in curves.values())


def test_int_task_id_and_bounds_accepted(bench: LCBench) -> None:
    a = bench.curve(3945, REASONABLE)
    b = bench.curve("3945", REASONABLE)
    np.testing.assert_array_equal(a["val_accuracy"], b["val_accuracy"])
    # the stored bounds carry float noise (0.00010000000000000009); the plain bounds must pass
    edge = dict(REASONABLE, learning_rate=1e-4, weight_decay=0.1, batch_size=512, max_dropout=0.0)
    bench.curve("3945", edge)
    bench.curve("3945", dict(REASONABLE, batch_size=np.int64(64), momentum=np.float32(0.9)))


def test_unknown_task_raises(bench: LCBench) -> None:
    with pytest.raises(ValueError, match=r"OpenML_task_id.*'12345'"):
        bench.curve("12345", REASONABLE)
    with pytest.raises(ValueError, match="OpenML_task_id"):
        bench.curves("167083", [REASONABLE])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("learning_rate", 0.5),
        ("learning_rate", 1e-6),
        ("batch_size", 8),
        ("batch_size", 1024),
        ("momentum", 0.0),
        ("num_layers", 6),
        ("max_units", 2048),
        ("max_dropout", 1.5),
        ("weight_decay", -0.01),
    ],
)
def test_out_of_range_raises(bench: LCBench, key: str, value: float) -> None:
    spec = bench.space[key]
    with pytest.raises(ValueError) as info:
        bench.curve("3945", dict(REASONABLE, **{key: value}))
    message = str(info.value)
    assert key in message
    assert repr(value) in message
    assert f"[{spec['lower']}, {spec['upper']}]" in message


@pytest.mark.parametrize(
    "config",
    [
        {k: v for k, v in REASONABLE.items() if k != "momentum"},  # missing
        dict(REASONABLE, epoch=10),  # fidelity is not a config key
        dict(REASONABLE, foo=1),  # unknown key
        dict(REASONABLE, batch_size=64.5),  # non-integral int
        dict(REASONABLE, num_layers=True),  # bool is not a number here
        dict(REASONABLE, momentum="0.9"),  # string
        dict(REASONABLE, max_dropout=float("nan")),  # not finite
    ],
)
def test_invalid_config_raises(bench: LCBench, config: dict) -> None:
    with pytest.raises(ValueError):
        bench.curve("3945", config)


def test_pickle_roundtrip(bench: LCBench) -> None:
    clone = pickle.loads(pickle.dumps(bench))
    np.testing.assert_array_equal(
        clone.curve("7593", REASONABLE)["val_accuracy"], bench.curve("7593", REASONABLE)["val_accuracy"]
    )
