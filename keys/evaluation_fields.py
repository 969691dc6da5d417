"""What a model's evaluation, input contract and runtime fields may hold: one rule each, both sides.

The sibling of ``keys.signed_fields`` for what issue 15 adds to a model:
the bundler applies these rules to a spec (exit 2, naming the field and its
line), the device to the signed release (exit 3) and to its own config
(``agent.yaml``, exit 2). Each rule takes the plain JSON/YAML value and
returns the typed one::

    thresholds = valid_metrics({"accuracy": {"min": 0.92}, "accuracy_": {}})
    # FieldError at ("accuracy_",): "is not a metric; classification: accuracy, ..."
    rules = valid_contract({"x": {"dtype": "float32", "shape": ["batch", 16], "max": 8}})
    options = valid_session({"graph_optimization_level": "all", "intra_op_threads": 2})

The rules:

* ``evaluate.metrics``: a mapping of metric name (``airlock.quality.evaluation``'s
  grammar) to a mapping of ``min``, ``max``, ``min_delta``, ``max_delta``
  (finite numbers, any sign; at least one); all of one task; at most
  ``MAX_EVAL_METRICS``. ``batch`` in 1..``MAX_EVAL_BATCH``, ``max_samples``
  in 1..``MAX_EVAL_SAMPLES``.
* ``inputs_contract``: input name (signed text) to a mapping of ``dtype``
  (one of ``airlock.quality.contract.DTYPES``), ``shape`` (a list of integers ≥ 0 and
  plain names, at most ``MAX_JSON_DEPTH`` long), ``min``/``max`` (finite,
  min ≤ max), ``nan``/``inf`` (booleans), ``values`` (distinct integers
  within ``MAX_JSON_INTEGER``, at most ``MAX_CONTRACT_VALUES``, for integer
  and boolean dtypes only).
* providers: a non-empty list of distinct one-line texts; session options:
  ``graph_optimization_level`` (disable, basic, extended, all),
  ``execution_mode`` (sequential, parallel), ``intra_op_threads`` and
  ``inter_op_threads`` (0 = ONNX Runtime's default, up to ``MAX_THREADS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from airlock.limits import (
    MAX_CONTRACT_VALUES,
    MAX_EVAL_BATCH,
    MAX_EVAL_CLASSES,
    MAX_EVAL_METRICS,
    MAX_EVAL_SAMPLES,
    MAX_JSON_DEPTH,
    MAX_JSON_INTEGER,
    MAX_THREADS,
    MAX_TOP_K,
)
from airlock.quality.contract import DTYPES, InputRule
from airlock.quality.evaluation import EvaluationError, Threshold, parse_metric, task_of
from keys.signed_fields import FieldError, is_plain_name, valid_line

__all__ = [
    "GRAPH_OPTIMIZATION_LEVELS",
    "SessionOptions",
    "valid_batch",
    "valid_contract",
    "valid_max_samples",
    "valid_metrics",
    "valid_providers",
    "valid_session",
]

GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
EXECUTION_MODES = ("sequential", "parallel")


@dataclass(frozen=True)
class SessionOptions:
    """ONNX Runtime session options the application uses; None leaves ONNX Runtime's default."""

    graph_optimization_level: str | None = None
    execution_mode: str | None = None
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _mapping(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(f"must be a mapping of {what}")
    for key in value:
        if not isinstance(key, str):
            raise FieldError(f"has a key that is not text; {what}")
    return value


def _integer(value: object, low: int, high: int, at: tuple[str | int, ...] = ()) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError("must be an integer", at)
    if not low <= value <= high:
        raise FieldError(f"must be between {low} and {high}", at)
    return value


def _finite(value: object, at: tuple[str | int, ...]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError("must be a number", at)
    try:
        f = float(value)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise FieldError("must be a finite number", at)
    return f


def _known(raw: dict[str, Any], allowed: tuple[str, ...], at: tuple[str | int, ...]) -> None:
    for key in raw:
        if key not in allowed:
            raise FieldError(f"unknown field; expected one of: {', '.join(allowed)}", (*at, key))


def valid_metrics(value: object) -> tuple[Threshold, ...]:
    raw = _mapping(value, "metric name to thresholds, e.g. accuracy: {min: 0.9}")
    if not raw:
        raise FieldError("names no metric; an evaluation must check something")
    if len(raw) > MAX_EVAL_METRICS:
        raise FieldError(f"names {len(raw)} metrics; at most {MAX_EVAL_METRICS} are allowed")
    out, parsed = [], []
    for name, rules in raw.items():
        try:
            valid_line(name)
        except FieldError as e:
            raise FieldError(f"has a metric name that {e}") from None
        try:
            parsed.append(parse_metric(name, max_k=MAX_TOP_K, max_classes=MAX_EVAL_CLASSES))
        except EvaluationError as e:
            raise FieldError(str(e), (name,)) from None
        if not isinstance(rules, dict) or not rules:
            raise FieldError("must be a mapping with at least one of min, max, min_delta, "
                             "max_delta", (name,))
        _known(rules, Threshold.RULES, (name,))
        bounds = {k: _finite(v, (name, k)) for k, v in rules.items()}
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            raise FieldError("min is above max: nothing could pass", (name,))
        out.append(Threshold(name, **bounds))
    try:
        task_of(parsed)
    except EvaluationError as e:
        raise FieldError(str(e)) from None
    return tuple(out)


def valid_batch(value: object) -> int:
    return _integer(value, 1, MAX_EVAL_BATCH)


def valid_max_samples(value: object) -> int:
    return _integer(value, 1, MAX_EVAL_SAMPLES)


_CONTRACT_FIELDS = ("dtype", "shape", "min", "max", "nan", "inf", "values")


def valid_contract(value: object) -> tuple[InputRule, ...]:
    raw = _mapping(value, "input name to its contract, e.g. x: {dtype: float32}")
    out = []
    for name, spec in raw.items():
        try:
            valid_line(name)
        except FieldError as e:
            raise FieldError(f"has an input name that {e}") from None
        if not isinstance(spec, dict):
            raise FieldError("must be a mapping of dtype, shape, min, max, nan, inf, values",
                             (name,))
        _known(spec, _CONTRACT_FIELDS, (name,))
        dtype = spec.get("dtype")
        if dtype is not None and dtype not in DTYPES:
            raise FieldError(f"must be one of {', '.join(DTYPES)}", (name, "dtype"))
        shape = spec.get("shape")
        if shape is not None:
            shape = tuple(_dims(shape, (name, "shape")))
        low = None if spec.get("min") is None else _finite(spec["min"], (name, "min"))
        high = None if spec.get("max") is None else _finite(spec["max"], (name, "max"))
        if low is not None and high is not None and low > high:
            raise FieldError("min is above max: no value could pass", (name,))
        flags = {}
        for key in ("nan", "inf"):
            v = spec.get(key, False)
            if not isinstance(v, bool):
                raise FieldError("must be true or false", (name, key))
            flags[key] = v
        values = spec.get("values")
        if values is not None:
            values = _values(values, dtype, (name, "values"))
        out.append(InputRule(name, dtype, shape, low, high, flags["nan"], flags["inf"], values))
    return tuple(out)


def _dims(value: object, at: tuple[str | int, ...]) -> list[int | str]:
    if not isinstance(value, list):
        raise FieldError("must be a list of sizes and names, e.g. [batch, 16]", at)
    if len(value) > MAX_JSON_DEPTH:
        raise FieldError(f"has more than {MAX_JSON_DEPTH} dimensions", at)
    dims: list[int | str] = []
    for i, d in enumerate(value):
        if isinstance(d, str):
            if not is_plain_name(d):
                raise FieldError("a named dimension must be a plain name", (*at, i))
            dims.append(d)
        else:
            dims.append(_integer(d, 0, MAX_JSON_INTEGER, (*at, i)))
    return dims


def _values(value: object, dtype: object, at: tuple[str | int, ...]) -> tuple[int, ...]:
    if dtype is not None and not (str(dtype).startswith(("int", "uint")) or dtype == "bool"):
        raise FieldError("lists allowed values, which are for integer and bool inputs", at)
    if not isinstance(value, list) or not value:
        raise FieldError("must be a non-empty list of integers", at)
    if len(value) > MAX_CONTRACT_VALUES:
        raise FieldError(f"lists {len(value)} values; at most {MAX_CONTRACT_VALUES}", at)
    seen: set[int] = set()
    for i, v in enumerate(value):
        n = int(v) if isinstance(v, bool) else _integer(v, -MAX_JSON_INTEGER, MAX_JSON_INTEGER,
                                                         (*at, i))
        if n in seen:
            raise FieldError(f"lists {n} twice", (*at, i))
        seen.add(n)
    return tuple(int(v) for v in value)


def valid_providers(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise FieldError("must be a non-empty list of provider names, e.g. "
                         "[CPUExecutionProvider]")
    seen: set[str] = set()
    for i, p in enumerate(value):
        try:
            valid_line(p)
        except FieldError as e:
            raise FieldError(str(e), (i,)) from None
        if not p:
            raise FieldError("is empty", (i,))
        if p in seen:
            raise FieldError(f"lists {p!r} twice", (i,))
        seen.add(p)
    return tuple(value)


_SESSION_FIELDS = ("graph_optimization_level", "execution_mode", "intra_op_threads",
                   "inter_op_threads")


def valid_session(value: object) -> SessionOptions:
    raw = _mapping(value, "ONNX Runtime session options")
    _known(raw, _SESSION_FIELDS, ())
    level, mode = raw.get("graph_optimization_level"), raw.get("execution_mode")
    if level is not None and level not in GRAPH_OPTIMIZATION_LEVELS:
        raise FieldError(f"must be one of {', '.join(GRAPH_OPTIMIZATION_LEVELS)}",
                         ("graph_optimization_level",))
    if mode is not None and mode not in EXECUTION_MODES:
        raise FieldError(f"must be one of {', '.join(EXECUTION_MODES)}", ("execution_mode",))
    threads = {k: None if raw.get(k) is None else _integer(raw[k], 0, MAX_THREADS, (k,))
               for k in ("intra_op_threads", "inter_op_threads")}
    return SessionOptions(level, mode, **threads)
