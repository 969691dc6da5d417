"""A model's evaluation set and input contract, read before they are signed.

What a device's evaluation would refuse after the stick has travelled is
refused at build instead (exit 2, naming the spec field and, for a contract,
the input and the rule)::

    facts = read_model(open_model, "classifier.onnx")          # bundler.build.model_check
    check_contract_signature(facts, model_spec.contract)       # names, dtypes, ranks, fixed dims
    check_data_contract(model_spec.contract, open_inputs, "health.inputs")
    samples = check_evaluation(facts, model_spec.evaluate, model_spec.contract,
                               open_data, open_labels)         # rows the device will score

* The contract must fit the model's own signature: every input it names is
  an input of the graph, with the same dtype and rank and no fixed
  dimension that differs.
* Golden inputs and the evaluation set are checked against the contract,
  value by value (streamed: memory stays one batch); the set is checked as
  the device feeds it, ``evaluate.batch`` rows at a time.
* The evaluation set names exactly the model's inputs, in the streamable
  format ``airlock.quality.npz_batches`` reads; its labels file holds one array,
  named after the model output it scores, with as many rows; for
  classification the labels are integers within the output's classes, and
  top-k metrics need a scores output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from airlock.limits import MAX_EVAL_BATCH_BYTES, MAX_EVAL_CLASSES, MAX_EVAL_SAMPLES, MAX_TOP_K
from airlock.quality.contract import ContractCheck, InputRule, check_signature
from airlock.quality.evaluation import CLASSIFICATION, Metric, parse_metric, task_of
from airlock.quality.npz_batches import ArrayHeader, NpzRows, NpzRowsError
from bundler.build.model_check import ModelCheckError, ModelFacts, Opener
from bundler.build.spec import EvaluateFiles

__all__ = ["check_contract_signature", "check_data_contract", "check_evaluation"]

# Rows per read when a whole file is checked (not fed to a model): bounded by bytes anyway.
_CHECK_ROWS = 4096


def check_contract_signature(facts: ModelFacts, rules: Sequence[InputRule]) -> None:
    problems = check_signature(rules, {n: facts.types.get(n, (None, None)) for n in facts.inputs})
    if problems:
        raise ModelCheckError("inputs_contract", f"does not fit the model: {problems[0]}")


def check_data_contract(rules: Sequence[InputRule], open_file: Opener, field: str, *,
                        batch: int | None = None, stacked: bool = False) -> int:
    """Every value of ``open_file`` against the contract; returns its rows.

    Without ``batch`` the file is one feed (golden inputs): its whole shape
    is checked. With it, the file is fed ``batch`` rows at a time.
    ``stacked``: axis 0 stacks samples (a drift reference), so a fixed first
    dimension of the contract (the model's batch) does not bound it.
    """
    try:
        with open_file() as f, NpzRows(f) as rows:
            if not rules:
                return rows.count
            check = ContractCheck(rules, stacked=stacked)
            first = rows.count if batch is None else min(batch, rows.count)
            check.shapes({n: (a.dtype, (first, *a.shape[1:])) for n, a in rows.arrays.items()})
            for start, part in rows.batches(_CHECK_ROWS, max_batch_bytes=MAX_EVAL_BATCH_BYTES * 4):
                check.rows(part, start)
    except NpzRowsError as e:
        raise ModelCheckError(field, str(e)) from None
    if check.violations:
        v = check.violations[0]
        more = len(check.violations) - 1
        raise ModelCheckError(field, f"breaks the input contract: {v.describe()}"
                              + (f" (and {more} more rule(s) broken)" if more else ""))
    return rows.count


def check_evaluation(facts: ModelFacts, ev: EvaluateFiles, rules: Sequence[InputRule],
                     open_data: Opener, open_labels: Opener) -> int:
    """The set and labels a device's evaluation can score; returns the rows it will score."""
    metrics = [parse_metric(t.metric, max_k=MAX_TOP_K, max_classes=MAX_EVAL_CLASSES)
               for t in ev.metrics]
    task = task_of(metrics)
    try:
        with open_data() as f, NpzRows(f) as data:
            arrays = dict(data.arrays)
            count = data.count
            per_row = sum(a.row_bytes for a in arrays.values())
    except NpzRowsError as e:
        raise ModelCheckError("evaluate.data", str(e)) from None
    names = frozenset(arrays)
    missing, extra = sorted(facts.inputs - names), sorted(names - facts.inputs)
    if missing:
        raise ModelCheckError("evaluate.data", f"lacks model input(s) {_list(missing)}")
    if extra:
        raise ModelCheckError("evaluate.data", f"names {_list(extra)}, which the model does not "
                              f"take (its inputs: {_list(sorted(facts.inputs)) or 'none'})")
    if count == 0:
        raise ModelCheckError("evaluate.data", "holds no samples")
    if count > MAX_EVAL_SAMPLES and ev.max_samples is None:
        raise ModelCheckError("evaluate.data", f"holds {count} samples; devices score at most "
                              f"{MAX_EVAL_SAMPLES}: set evaluate.max_samples")
    if per_row * ev.batch > MAX_EVAL_BATCH_BYTES:
        raise ModelCheckError("evaluate.batch", f"{ev.batch} rows are {per_row * ev.batch} bytes "
                              f"of input; at most {MAX_EVAL_BATCH_BYTES} per batch")
    for name, a in sorted(arrays.items()):
        _fits_model(name, str(a.dtype), a.shape, facts, ev.batch)
    check_data_contract(rules, open_data, "evaluate.data", batch=ev.batch)

    try:
        with open_labels() as f, NpzRows(f) as labels:
            if len(labels.arrays) != 1:
                raise ModelCheckError("evaluate.labels", f"holds {len(labels.arrays)} arrays; it "
                                      "must hold one, named after the model output it scores")
            (label,) = labels.arrays.values()
            if label.name not in facts.outputs:
                raise ModelCheckError("evaluate.labels", f"names {label.name!r}, which the model "
                                      f"does not output (its outputs: "
                                      f"{_list(sorted(facts.outputs))})")
            if labels.count != count:
                raise ModelCheckError("evaluate.labels", f"has {labels.count} rows for the "
                                      f"{count} samples of evaluate.data")
            if task == CLASSIFICATION:
                _check_class_labels(facts, label.name, labels, metrics)
            else:
                _check_regression_labels(facts, label)
    except NpzRowsError as e:
        raise ModelCheckError("evaluate.labels", str(e)) from None
    return count if ev.max_samples is None else min(count, ev.max_samples)


def _fits_model(name: str, dtype: str, shape: tuple[int, ...], facts: ModelFacts,
                batch: int) -> None:
    """The set's rows fed ``batch`` at a time fit the model's declared input."""
    want_dtype, dims = facts.types.get(name, (None, None))
    if want_dtype is not None and dtype != want_dtype:
        raise ModelCheckError("evaluate.data", f"array {name!r} is {dtype}; the model takes "
                              f"{want_dtype}")
    if dims is None:
        return
    if len(dims) != len(shape):
        raise ModelCheckError("evaluate.data", f"array {name!r} has shape {list(shape)}; the "
                              f"model takes rank {len(dims)}")
    if isinstance(dims[0], int) and dims[0] != batch:
        raise ModelCheckError("evaluate.batch", f"{batch} does not fit input {name!r}, whose "
                              f"first dimension is fixed at {dims[0]} in the model; set batch: "
                              f"{dims[0]}")
    for i, (want, have) in enumerate(zip(dims[1:], shape[1:], strict=True), start=1):
        if isinstance(want, int) and want != have:
            raise ModelCheckError("evaluate.data", f"array {name!r} has shape {list(shape)}: "
                                  f"dimension {i} is {have}, the model takes {want}")


def _check_class_labels(facts: ModelFacts, output: str, labels: NpzRows,
                        metrics: Sequence[Metric]) -> None:
    (label,) = labels.arrays.values()
    if label.dtype.kind not in "iub" or len(label.shape) > 2 or (
            len(label.shape) == 2 and label.shape[1] != 1):
        raise ModelCheckError("evaluate.labels", f"classification labels must be integers, one "
                              f"per sample; {label.name!r} is {label.dtype} of shape "
                              f"{list(label.shape)}")
    dtype, dims = facts.types.get(output, (None, None))
    classes = dims[1] if dims is not None and len(dims) == 2 and isinstance(dims[1], int) else None
    scores = dtype is None or dtype.startswith("float")
    top_k = [m for m in metrics if m.k is not None]
    if top_k and not scores:
        raise ModelCheckError("evaluate.metrics", f"{top_k[0].name} needs "
                              f"[samples, classes] scores, and output {output!r} is {dtype}")
    for start, part in labels.batches(_CHECK_ROWS, max_batch_bytes=MAX_EVAL_BATCH_BYTES):
        values = part[label.name].reshape(-1).astype("int64")
        bad = (values < 0) | (values >= (classes if classes is not None else MAX_EVAL_CLASSES))
        if bad.any():
            at = int(bad.argmax())
            limit = (f"the model's {classes} classes" if classes is not None
                     else f"0..{MAX_EVAL_CLASSES - 1}")
            raise ModelCheckError("evaluate.labels", f"label {int(values[at])} of sample "
                                  f"{start + at} is not one of {limit}")


def _check_regression_labels(facts: ModelFacts, label: ArrayHeader) -> None:
    if label.dtype.kind not in "iuf":
        raise ModelCheckError("evaluate.labels", f"regression labels must be numbers, not "
                              f"{label.dtype}")
    _, dims = facts.types.get(label.name, (None, None))
    if dims is None or not all(isinstance(d, int) for d in dims[1:]):
        return
    per_sample = math.prod(label.shape[1:])
    gives = math.prod(d for d in dims[1:] if isinstance(d, int))
    if per_sample != gives:
        raise ModelCheckError("evaluate.labels", f"hold {per_sample} value(s) per sample; output "
                              f"{label.name!r} gives {gives}")


def _list(names: list[str]) -> str:
    return ", ".join(map(repr, names))

