"""LCBench learning curves from YAHPO-Gym's ONNX surrogate, without ``yahpo-gym``.

Why this module exists
----------------------
The search-efficiency benchmark compares searchers and schedulers on LCBench
(34 OpenML tasks, 7 hyperparameters of a funnel-shaped MLP, 52 epochs).  The
official reader, the ``yahpo-gym`` package, pins ``numpy<2`` and therefore
cannot live in the same environment as the rest of the engine.  The surrogate
itself is a plain ONNX file, so this module queries it with ``onnxruntime``
and re-implements the small amount of Python that ``yahpo-gym`` puts between a
configuration dict and the ONNX session.

Data folder (YAHPO data v1.0.2, ``lcbench/``): ``model.onnx``,
``config_space.json`` (ConfigSpace JSON), ``encoding.json``.  It is looked up
in this order: the ``path`` argument, the environment variable
``FORGE_HPO_LCBENCH``, ``<repo root>/../shared/data/lcbench``.

What is replicated from yahpo-gym, and where it comes from
-----------------------------------------------------------
All references are to the ``slds-lmu/yahpo_gym`` repository.

1. Input layout -- ``yahpo_gym/yahpo_gym/benchmark_set.py``,
   ``BenchmarkSet._config_to_xs`` and ``BenchmarkSet.objective_function``:

   * ``x_cont``: float32 array of shape ``(n, 8)`` holding the *raw*
     hyperparameter values (no log transform, no scaling on the Python side)
     in the order of ``cont_names`` from
     ``yahpo_gym/yahpo_gym/benchmarks/lcbench.py``:
     ``epoch, batch_size, learning_rate, momentum, weight_decay, num_layers,
     max_units, max_dropout``.
   * ``x_cat``: int32 array of shape ``(n, 1)`` holding the integer code of
     ``OpenML_task_id`` (the only entry of ``cat_names``), looked up as
     ``encoding["OpenML_task_id"][task_id]`` (``BenchmarkSet._integer_encode``,
     codes from ``encoding.json``; ``"#na#"`` is code 0).
   * The session is fed ``{inputs[0]: x_cat, inputs[1]: x_cont}`` (the model's
     inputs are named ``x_cat`` and ``x_cont``); several configurations are
     stacked row-wise into one call, exactly as ``objective_function`` does
     with ``np.vstack``.
   * The single output has shape ``(n, 6)``; its columns are ``y_names`` from
     ``benchmarks/lcbench.py``: ``time, val_accuracy, val_cross_entropy,
     val_balanced_accuracy, test_cross_entropy, test_balanced_accuracy``.

2. Scaling lives inside the ONNX graph -- ``yahpo_train/yahpo_train/models.py``
   (``AbstractSurrogate``: the input scalers ``embds_dbl`` and the target
   scalers ``embds_tgt`` are sub-modules, and ``forward(...,
   invert_ytrafo=True)`` is what ``export_onnx`` traces).  Inspecting
   ``model.onnx`` confirms it: ``epoch``, ``learning_rate`` and
   ``weight_decay`` go through ``log(x + 1e-12)`` and a min-max scaling, the
   other five inputs through a min-max scaling; the sigmoid head is mapped
   back to natural units, through ``exp`` for ``val_accuracy``,
   ``val_balanced_accuracy`` and ``test_balanced_accuracy`` (the ``"tlog"``
   entries of ``best_params_resnet.json``).  So the outputs need no
   de-normalisation here: ``time`` is in seconds, ``val_accuracy`` in percent
   (0-100), the balanced accuracies in [0, 1], cross-entropies are >= 0.
   Feeding pre-logged or pre-scaled values would be wrong.

3. Task ids and ranges -- ``config_space.json`` (read by
   ``BenchmarkSet._get_config_space``).  ``task_ids`` are the 34 choices of
   ``OpenML_task_id`` in file order; ``encoding.json`` also lists ``167083``,
   which the v1.0 config space dropped, so it is not offered here.
   ``epoch`` is the fidelity (``fidelity_params`` in ``benchmarks/lcbench.py``),
   an integer 1..52; ``curve`` always evaluates all 52 epochs in one call.

Deliberate differences from yahpo-gym
-------------------------------------
* Validation is strict and done here instead of by ConfigSpace's
  ``check_configuration``: all 7 hyperparameters are required (yahpo-gym
  silently fills a missing value with 0, which the surrogate then treats as a
  real input), unknown keys are rejected, values must be finite numbers inside
  the config-space range (with a 1e-9 relative tolerance, because the stored
  bounds carry float noise such as ``0.00010000000000000009``), and integer
  hyperparameters must have integral values.  Violations raise ``ValueError``
  naming the key, the range and the value.
* The session runs single-threaded by default: a 52-row query is faster on one
  thread than with onnxruntime's default thread pool, and benchmark runs are
  parallelised over processes anyway.
* Outputs are returned as float64 arrays (the model computes in float32).
* The surrogate's cumulative ``time`` is not always monotone in ``epoch``
  (for roughly 7-8% of random configurations, mostly a too-large value at
  epoch 1).  ``time`` is returned exactly as the model gives it; the extra key
  ``time_cummax`` (its running maximum) is provided for code that needs a
  non-decreasing cumulative cost.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

try:
    import onnxruntime as _ort
except ImportError:  # pragma: no cover - exercised only without onnxruntime
    _ort = None

__all__ = [
    "CONT_NAMES",
    "ENV_VAR",
    "EPOCHS",
    "HYPERPARAMETERS",
    "LCBench",
    "N_EPOCHS",
    "TARGETS",
    "TASK_KEY",
    "default_path",
]

#: Environment variable that overrides the default data folder.
ENV_VAR = "FORGE_HPO_LCBENCH"

#: Name of the categorical task parameter (``instance_names`` in yahpo-gym).
TASK_KEY = "OpenML_task_id"

#: Name of the fidelity parameter (``fidelity_params`` in yahpo-gym).
FIDELITY_KEY = "epoch"

#: Column order of ``x_cont`` (``cont_names`` in yahpo-gym's ``benchmarks/lcbench.py``).
CONT_NAMES: tuple[str, ...] = (
    "epoch",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
)

#: The 7 searchable hyperparameters (``CONT_NAMES`` without the fidelity).
HYPERPARAMETERS: tuple[str, ...] = CONT_NAMES[1:]

#: Column order of the model output (``y_names`` in yahpo-gym's ``benchmarks/lcbench.py``).
TARGETS: tuple[str, ...] = (
    "time",
    "val_accuracy",
    "val_cross_entropy",
    "val_balanced_accuracy",
    "test_cross_entropy",
    "test_balanced_accuracy",
)

#: Number of epochs in every LCBench learning curve.
N_EPOCHS = 52

#: The epochs a curve is evaluated at, 1..52.
EPOCHS: np.ndarray = np.arange(1, N_EPOCHS + 1)
EPOCHS.setflags(write=False)

_REL_TOL = 1e-9
_CONT_INDEX = {name: i for i, name in enumerate(CONT_NAMES)}


def default_path() -> Path:
    """Return the data folder used when none is given.

    ``FORGE_HPO_LCBENCH`` wins so that runs on other machines can point at
    their own copy; otherwise the shared data folder next to the repository
    (``<repo root>/../shared/data/lcbench``) is used.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "data" / "lcbench"


def _read_space(config_space: Mapping[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, Any]]:
    """Split the ConfigSpace JSON into task ids, the 7 hyperparameters and the fidelity.

    Kept separate from the class so the parsing (the part most likely to
    break on a different data version) fails with a clear message.
    """
    by_name = {hp["name"]: hp for hp in config_space["hyperparameters"]}
    missing = [n for n in (TASK_KEY, *CONT_NAMES) if n not in by_name]
    if missing:
        raise ValueError(f"config_space.json lacks hyperparameters {missing}")
    task_ids = [str(c) for c in by_name[TASK_KEY]["choices"]]
    space: dict[str, dict[str, Any]] = {}
    for name in CONT_NAMES:
        hp = by_name[name]
        kind = hp["type"]
        if kind not in ("uniform_int", "uniform_float"):
            raise ValueError(f"unsupported type {kind!r} for {name!r} in config_space.json")
        is_int = kind == "uniform_int"
        cast = int if is_int else float
        space[name] = {
            "type": "int" if is_int else "float",
            "lower": cast(hp["lower"]),
            "upper": cast(hp["upper"]),
            "log": bool(hp.get("log", False)),
            "default": cast(hp["default"]),
        }
    fidelity = space.pop(FIDELITY_KEY)
    return task_ids, space, fidelity


def _in_range(value: float, lower: float, upper: float) -> bool:
    """Range test with a relative tolerance for the float noise in the stored bounds."""
    if lower <= value <= upper:
        return True
    return math.isclose(value, lower, rel_tol=_REL_TOL) or math.isclose(value, upper, rel_tol=_REL_TOL)


class LCBench:
    """YAHPO-Gym's LCBench surrogate, queried one full learning curve at a time.

    Load it once (the ONNX session is the expensive part) and reuse it.

    Attributes:
        path: the data folder.
        task_ids: the 34 OpenML task ids, as strings, in config-space order.
        space: the 7 hyperparameters, ``{name: {"type": "int"|"float",
            "lower", "upper", "log": bool, "default"}}``.
        fidelity: the epoch range, ``{"type": "int", "lower": 1, "upper": 52, ...}``.
        targets: the model's output names, in output order.
        epochs: ``EPOCHS``, the epochs 1..52 every curve is given at.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, threads: int = 1) -> None:
        """Load ``model.onnx``, ``config_space.json`` and ``encoding.json`` from ``path``.

        Args:
            path: data folder; ``None`` means ``default_path()``.
            threads: onnxruntime intra-op threads; 1 is fastest for 52-row
                queries, 0 lets onnxruntime choose (helps only for large batches).

        Raises:
            ImportError: onnxruntime is not installed.
            FileNotFoundError: a required file is missing from the folder.
        """
        if _ort is None:
            raise ImportError("onnxruntime is required to read the LCBench surrogate (pip install onnxruntime)")
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.threads = int(threads)
        for name in ("model.onnx", "config_space.json", "encoding.json"):
            if not (self.path / name).is_file():
                raise FileNotFoundError(f"LCBench data file {name!r} not found in {self.path}")

        with open(self.path / "config_space.json", encoding="utf-8") as f:
            self.task_ids, self.space, self.fidelity = _read_space(json.load(f))
        with open(self.path / "encoding.json", encoding="utf-8") as f:
            codes = json.load(f)[TASK_KEY]
        unknown = [t for t in self.task_ids if t not in codes]
        if unknown:
            raise ValueError(f"encoding.json has no code for task ids {unknown}")
        self._task_code = {t: int(codes[t]) for t in self.task_ids}
        if (self.fidelity["lower"], self.fidelity["upper"]) != (1, N_EPOCHS):
            raise ValueError(f"expected epochs 1..{N_EPOCHS}, config_space.json says {self.fidelity}")
        self.targets = TARGETS
        self.epochs = EPOCHS
        self._open_session()

    def _open_session(self) -> None:
        """Create the onnxruntime session and check its signature against yahpo-gym's layout."""
        options = _ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self._session = _ort.InferenceSession(
            str(self.path / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs = self._session.get_inputs()
        # benchmark_set.py feeds {inputs[0]: x_cat, inputs[1]: x_cont} positionally.
        self._cat_name, self._cont_name = inputs[0].name, inputs[1].name
        if inputs[1].shape[-1] != len(CONT_NAMES) or inputs[0].shape[-1] != 1:
            raise ValueError(f"unexpected model inputs {[(i.name, i.shape) for i in inputs]}")
        output = self._session.get_outputs()[0]
        if output.shape[-1] != len(TARGETS):
            raise ValueError(f"unexpected model output shape {output.shape}")
        self._output_name = output.name

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the session (not picklable) so the object can go to worker processes."""
        state = self.__dict__.copy()
        state.pop("_session", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Re-open the session after unpickling."""
        self.__dict__.update(state)
        self._open_session()

    def __repr__(self) -> str:
        return f"LCBench(path={str(self.path)!r}, tasks={len(self.task_ids)})"

    # ------------------------------------------------------------------ validation

    def _check_task(self, task_id: str | int) -> int:
        """Return the integer code of ``task_id`` or raise ``ValueError``."""
        key = str(task_id)
        code = self._task_code.get(key)
        if code is None:
            raise ValueError(
                f"{TASK_KEY}={task_id!r} is not an LCBench task; valid ids ({len(self.task_ids)}): "
                f"{', '.join(self.task_ids)}"
            )
        return code

    def _check_config(self, config: Mapping[str, Any]) -> list[float]:
        """Validate one configuration and return its 7 values in ``HYPERPARAMETERS`` order."""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping of hyperparameter values, got {type(config).__name__}")
        extra = [k for k in config if k not in self.space]
        if extra:
            hint = " (curves cover all epochs; do not pass 'epoch')" if FIDELITY_KEY in extra else ""
            raise ValueError(f"unknown hyperparameter(s) {extra}{hint}; expected {list(self.space)}")
        values = []
        for name in HYPERPARAMETERS:
            spec = self.space[name]
            lo, hi = spec["lower"], spec["upper"]
            if name not in config:
                raise ValueError(f"missing hyperparameter {name!r} (range [{lo}, {hi}])")
            raw = config[name]
            if isinstance(raw, (bool, np.bool_)) or not isinstance(raw, Real):
                raise ValueError(f"{name}={raw!r} is not a number (range [{lo}, {hi}])")
            value = float(raw)
            if not math.isfinite(value) or not _in_range(value, lo, hi):
                raise ValueError(f"{name}={raw!r} is out of range [{lo}, {hi}]")
            if spec["type"] == "int" and not value.is_integer():
                raise ValueError(f"{name}={raw!r} must be an integer in [{lo}, {hi}]")
            values.append(value)
        return values

    # ------------------------------------------------------------------ queries

    def curves(self, task_id: str | int, configs: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Full 52-epoch learning curves for many configurations in one ONNX call.

        Batching amortises onnxruntime's per-call overhead, which dominates a
        52-row query; use this whenever several configurations are known at once.

        Args:
            task_id: one of ``task_ids`` (str or int).
            configs: mappings with exactly the 7 keys of ``space``.

        Returns:
            ``{target: array of shape (len(configs), 52)}`` for every name in
            ``TARGETS`` plus ``"time_cummax"``; column ``j`` is epoch ``j + 1``.
            ``time`` is cumulative simulated seconds, ``val_accuracy`` is in percent.

        Raises:
            ValueError: unknown task id, or a missing/unknown/out-of-range value.
        """
        code = self._check_task(task_id)
        if isinstance(configs, Mapping):
            raise ValueError("configs must be a sequence of mappings; use curve() for a single config")
        rows = np.array([self._check_config(c) for c in configs], dtype=np.float64).reshape(-1, len(HYPERPARAMETERS))
        n = rows.shape[0]
        if n == 0:
            empty = {name: np.empty((0, N_EPOCHS)) for name in TARGETS}
            empty["time_cummax"] = np.empty((0, N_EPOCHS))
            return empty
        x_cont = np.empty((n * N_EPOCHS, len(CONT_NAMES)), dtype=np.float32)
        x_cont[:, 0] = np.tile(EPOCHS, n)
        x_cont[:, 1:] = np.repeat(rows, N_EPOCHS, axis=0)
        x_cat = np.full((n * N_EPOCHS, 1), code, dtype=np.int32)
        out = self._session.run([self._output_name], {self._cat_name: x_cat, self._cont_name: x_cont})[0]
        out = out.astype(np.float64).reshape(n, N_EPOCHS, len(TARGETS))
        result = {name: np.ascontiguousarray(out[:, :, j]) for j, name in enumerate(TARGETS)}
        result["time_cummax"] = np.maximum.accumulate(result["time"], axis=1)
        return result

    def curve(self, task_id: str | int, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Full 52-epoch learning curve of one configuration (one ONNX call of 52 rows).

        Returns:
            ``{target: array of shape (52,)}`` for every name in ``TARGETS``
            plus ``"time_cummax"``; index ``j`` is epoch ``j + 1``.

        Raises:
            ValueError: unknown task id, or a missing/unknown/out-of-range value.
        """
        return {name: values[0] for name, values in self.curves(task_id, [config]).items()}

    def default_config(self) -> dict[str, int | float]:
        """The config-space defaults, a convenient valid configuration for smoke runs."""
        return {name: spec["default"] for name, spec in self.space.items()}
