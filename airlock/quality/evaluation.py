"""Model quality on a labelled set: metric names, their streaming computation, and thresholds.

A model may carry an evaluation set with thresholds (``evaluate:`` in the
spec, docs/HEALTH.md). The health child streams the set through the model a
batch at a time and feeds a tally; the parent judges the result::

    metrics = [parse_metric(n, max_k=100, max_classes=1024) for n in ("accuracy", "top5_accuracy")]
    tally = new_tally(metrics, max_classes=1024)
    for batch, labels in ...:                       # airlock.quality.npz_batches.NpzRows
        tally.add(session.run([output], batch)[0], labels)
    result = tally.result(metrics, detailed_classes=64)
    result["metrics"]                               # {"accuracy": 0.9512, "f1_macro": 0.95, ...}
    checks = judge([Threshold("accuracy", min=0.92)], result["metrics"])
    [c["reason"] for c in checks if not c["ok"]]    # ["accuracy 0.8731 < min 0.92"]

Metrics (numpy only, no scikit-learn on the device), each computed from
running sums, so memory stays one batch plus a classes x classes matrix:

* classification, from ``[samples, classes]`` scores (probabilities or
  logits; the prediction is the arg-max) or ``[samples]`` class labels,
  against integer labels: ``accuracy``, ``topK_accuracy`` (K in 1..max_k,
  scores only), ``precision_macro``, ``recall_macro``, ``f1_macro`` (mean
  over the classes that occur in labels or predictions), ``*_weighted``
  (weighted by each class's support), and per class ``precision[C]``,
  ``recall[C]``, ``f1[C]``; a value whose denominator is zero (a class
  never predicted) counts as 0, as scikit-learn's default does. The result
  also carries the confusion matrix (rows: labels, columns: predictions).
* regression, outputs against labels of the same shape per sample:
  ``mae``, ``mse``, ``rmse``, ``max_abs_error`` over every element, and
  ``r2`` (coefficient of determination per output column, averaged: 1 is
  perfect, 0 is no better than the mean, it can be negative).

A threshold is absolute (``min``, ``max``) or relative to the release being
replaced (``min_delta``, ``max_delta``: ``value - running value`` must stay
within them), used only when that release's recorded result was measured on
the same set (same digests, same number of samples).

Imports only the standard library and numpy (lazily): the health child loads
this file by absolute path from beside itself (``airlock/quality/_health_child.py``),
and keys/ imports its metric grammar.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "EvaluationError",
    "Metric",
    "Threshold",
    "judge",
    "new_tally",
    "parse_metric",
    "task_of",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"

_CLASS_AVERAGED = ("precision", "recall", "f1")
_CLASSIFICATION_PLAIN = ("accuracy", *(f"{m}_{avg}" for m in _CLASS_AVERAGED
                                       for avg in ("macro", "weighted")))
_REGRESSION_PLAIN = ("mae", "mse", "rmse", "r2", "max_abs_error")
_LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "max_abs_error"})
_TOP_K = re.compile(r"top([1-9][0-9]*)_accuracy")
_PER_CLASS = re.compile(r"(precision|recall|f1)\[(0|[1-9][0-9]*)\]")


class EvaluationError(ValueError):
    """The model's output or the labels cannot be scored; the message says why, in one line."""


@dataclass(frozen=True)
class Metric:
    """A metric as named in a spec: ``top5_accuracy`` is kind ``top_k`` with ``k`` 5."""

    name: str
    task: str
    kind: str  # a plain metric name, "top_k", or a per-class "precision" | "recall" | "f1"
    k: int | None = None
    cls: int | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.kind not in _LOWER_IS_BETTER


def parse_metric(name: str, *, max_k: int, max_classes: int) -> Metric:
    """The metric ``name`` names, or EvaluationError listing the names there are."""
    if name in _CLASSIFICATION_PLAIN:
        return Metric(name, CLASSIFICATION, name)
    if name in _REGRESSION_PLAIN:
        return Metric(name, REGRESSION, name)
    m = _TOP_K.fullmatch(name)
    if m:
        k = int(m.group(1)) if len(m.group(1)) <= 6 else max_k + 1
        if k > max_k:
            raise EvaluationError(f"top-k accuracy is defined here for k up to {max_k}")
        return Metric(name, CLASSIFICATION, "top_k", k=k)
    m = _PER_CLASS.fullmatch(name)
    if m:
        cls = int(m.group(2)) if len(m.group(2)) <= 6 else max_classes
        if cls >= max_classes:
            raise EvaluationError(f"classes are numbered 0..{max_classes - 1}")
        return Metric(name, CLASSIFICATION, m.group(1), cls=cls)
    raise EvaluationError(
        "is not a metric; classification: " + ", ".join(_CLASSIFICATION_PLAIN)
        + ", topK_accuracy, precision[C], recall[C], f1[C]; regression: "
        + ", ".join(_REGRESSION_PLAIN)
    )


def task_of(metrics: Sequence[Metric]) -> str:
    """The one task the metrics belong to; none, or a mix of both, is an EvaluationError."""
    tasks = {m.task for m in metrics}
    if not tasks:
        raise EvaluationError("names no metric")
    if len(tasks) > 1:
        raise EvaluationError("mixes classification and regression metrics ("
                              + ", ".join(f"{m.name}: {m.task}" for m in metrics) + ")")
    return tasks.pop()


# -- tallies ----------------------------------------------------------------------------------


def new_tally(metrics: Sequence[Metric], *, max_classes: int) -> ClassificationTally | RegressionTally:
    """The running sums ``metrics`` need."""
    if task_of(metrics) == CLASSIFICATION:
        return ClassificationTally(max_classes, sorted({m.k for m in metrics if m.k is not None}))
    return RegressionTally()


class ClassificationTally:
    """Confusion matrix and top-k hits, grown batch by batch."""

    def __init__(self, max_classes: int, top_ks: Sequence[int] = ()) -> None:
        import numpy as np

        self.max_classes = max_classes
        self.top_ks = list(top_ks)
        self.samples = 0
        self.top_hits = dict.fromkeys(self.top_ks, 0)
        self.model_classes: int | None = None  # width of a scores output
        self.non_finite = 0
        self.cm = np.zeros((0, 0), np.int64)

    def add(self, output: Any, labels: Any) -> None:
        import numpy as np

        truth = _class_labels(labels)
        out = np.asarray(output)
        if out.ndim == 2 and out.shape[1] == 1 and out.dtype.kind in "iub":
            out = out[:, 0]
        scores = None
        if out.ndim == 1 and out.dtype.kind in "iub":
            pred = out.astype(np.int64)
            if pred.size and int(pred.min()) < 0:
                raise EvaluationError("the model predicted a negative class label")
        elif out.ndim == 2 and out.dtype.kind == "f" and out.shape[1] >= 1:
            scores = out
            self.model_classes = out.shape[1]
            self.non_finite += int((~np.isfinite(out)).any(axis=1).sum())
            pred = np.argmax(out, axis=1).astype(np.int64)
        else:
            raise EvaluationError(
                f"a classifier's output must be [samples, classes] scores or [samples] class "
                f"labels; this one is {out.dtype} of shape {list(out.shape)}"
            )
        if len(pred) != len(truth):
            raise EvaluationError(f"the model gave {len(pred)} predictions for {len(truth)} samples")
        if self.top_ks and scores is None:
            raise EvaluationError("top-k accuracy needs [samples, classes] scores, and the model "
                                  "outputs class labels")
        if truth.size and self.model_classes is not None and truth.max() >= self.model_classes:
            at = int(np.argmax(truth >= self.model_classes))
            raise EvaluationError(
                f"label {int(truth[at])} of sample {self.samples + at} is not one of the "
                f"model's {self.model_classes} classes"
            )
        size = max(self.cm.shape[0], self.model_classes or 0,
                   int(truth.max()) + 1 if truth.size else 0,
                   int(pred.max()) + 1 if pred.size else 0)
        if size > self.max_classes:
            raise EvaluationError(f"{size} classes; at most {self.max_classes} can be scored")
        if size > self.cm.shape[0]:
            grown = np.zeros((size, size), np.int64)
            grown[: self.cm.shape[0], : self.cm.shape[0]] = self.cm
            self.cm = grown
        self.cm += np.bincount(truth * size + pred, minlength=size * size).reshape(size, size)
        if scores is not None:
            for k in self.top_ks:
                if k >= scores.shape[1]:
                    self.top_hits[k] += len(truth)
                else:
                    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                    self.top_hits[k] += int((top == truth[:, None]).any(axis=1).sum())
        self.samples += len(truth)

    def result(self, metrics: Sequence[Metric], *, detailed_classes: int) -> dict[str, Any]:
        import numpy as np

        cm, n = self.cm, self.samples
        classes = cm.shape[0]
        tp = np.diag(cm).astype(np.float64)
        predicted, support = cm.sum(axis=0), cm.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
            recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
            denom = precision + recall
            f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
        per = {"precision": precision, "recall": recall, "f1": f1}
        present = (predicted + support) > 0
        values: dict[str, float | None] = {"accuracy": float(tp.sum() / n) if n else None}
        for name, arr in per.items():
            values[f"{name}_macro"] = float(arr[present].mean()) if present.any() else None
            values[f"{name}_weighted"] = float((arr * support).sum() / n) if n else None
        notes = []
        for m in metrics:
            if m.kind == "top_k" and m.k is not None:
                values[m.name] = self.top_hits[m.k] / n if n else None
            elif m.cls is not None:
                if self.model_classes is not None and m.cls >= self.model_classes:
                    raise EvaluationError(f"{m.name} names class {m.cls}, but the model has "
                                          f"{self.model_classes} classes")
                values[m.name] = float(per[m.kind][m.cls]) if m.cls < classes else 0.0
        if self.non_finite:
            notes.append(f"{self.non_finite} sample(s) had non-finite scores")
        out: dict[str, Any] = {"task": CLASSIFICATION, "samples": n, "classes": classes,
                               "metrics": values, "notes": notes}
        if classes <= detailed_classes:
            out["per_class"] = {
                "precision": [round(float(v), 6) for v in precision],
                "recall": [round(float(v), 6) for v in recall],
                "f1": [round(float(v), 6) for v in f1],
                "support": [int(v) for v in support],
            }
            out["confusion"] = cm.tolist()
        else:
            notes.append(f"{classes} classes: per-class detail and the confusion matrix are "
                         f"kept for at most {detailed_classes}")
        return out


class RegressionTally:
    """Error sums and, per output column, the labels' mean and spread (Chan's parallel update)."""

    def __init__(self) -> None:
        self.samples = 0
        self.elements = 0
        self.abs_sum = 0.0
        self.sq_sum = 0.0
        self.max_abs = 0.0
        self.non_finite = 0
        self.columns: int | None = None
        self.mean: Any = None
        self.m2: Any = None
        self.sse: Any = None

    def add(self, output: Any, labels: Any) -> None:
        import numpy as np

        truth = np.asarray(labels)
        out = np.asarray(output)
        if truth.dtype.kind not in "iuf" or out.dtype.kind not in "iuf":
            raise EvaluationError(f"regression needs numeric outputs and labels; got {out.dtype} "
                                  f"and {truth.dtype}")
        n = truth.shape[0] if truth.ndim else 0
        if out.ndim == 0 or out.shape[0] != n:
            raise EvaluationError(f"the model gave output of shape {list(out.shape)} for {n} "
                                  "samples")
        t = truth.reshape(n, -1).astype(np.float64)
        p = out.reshape(n, -1).astype(np.float64)
        if p.shape != t.shape:
            raise EvaluationError(f"output of shape {list(out.shape)} does not match labels of "
                                  f"shape {list(truth.shape)}")
        if self.columns is None:
            self.columns = t.shape[1]
            self.mean = np.zeros(self.columns)
            self.m2 = np.zeros(self.columns)
            self.sse = np.zeros(self.columns)
        err = p - t
        finite = np.isfinite(err)
        self.non_finite += int((~finite).sum())
        err = np.where(finite, err, np.inf)
        self.abs_sum += float(np.abs(err).sum())
        self.sq_sum += float((err * err).sum())
        if err.size:
            self.max_abs = max(self.max_abs, float(np.abs(err).max()))
        self.sse += (err * err).sum(axis=0)
        if n:
            b_mean = t.mean(axis=0)
            b_m2 = ((t - b_mean) ** 2).sum(axis=0)
            total = self.samples + n
            delta = b_mean - self.mean
            self.mean = self.mean + delta * n / total
            self.m2 = self.m2 + b_m2 + delta * delta * self.samples * n / total
        self.samples += n
        self.elements += err.size

    def result(self, metrics: Sequence[Metric], *, detailed_classes: int) -> dict[str, Any]:
        import numpy as np

        values: dict[str, float | None] = dict.fromkeys(_REGRESSION_PLAIN)
        notes = []
        if self.elements and not self.non_finite:
            mse = self.sq_sum / self.elements
            r2_cols = np.where(self.m2 > 0, 1 - self.sse / np.where(self.m2 > 0, self.m2, 1),
                               np.where(self.sse == 0, 1.0, 0.0))
            values.update(mae=self.abs_sum / self.elements, mse=mse, rmse=math.sqrt(mse),
                          max_abs_error=self.max_abs, r2=float(r2_cols.mean()))
        if self.non_finite:
            notes.append(f"the model output {self.non_finite} non-finite value(s): "
                         "no regression metric is defined")
        return {"task": REGRESSION, "samples": self.samples, "columns": self.columns,
                "metrics": values, "notes": notes}


def _class_labels(labels: Any) -> Any:
    import numpy as np

    truth = np.asarray(labels)
    if truth.ndim == 2 and truth.shape[1] == 1:
        truth = truth[:, 0]
    if truth.ndim != 1 or truth.dtype.kind not in "iub":
        raise EvaluationError(f"classification labels must be integers, one per sample; these "
                              f"are {truth.dtype} of shape {list(truth.shape)}")
    truth = truth.astype(np.int64)
    if truth.size and int(truth.min()) < 0:
        raise EvaluationError("classification labels must not be negative")
    return truth


# -- thresholds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """What one metric must reach: absolute bounds, and bounds relative to the running release."""

    metric: str
    min: float | None = None
    max: float | None = None
    min_delta: float | None = None
    max_delta: float | None = None

    RULES = ("min", "max", "min_delta", "max_delta")

    def rules(self) -> dict[str, float]:
        """The bounds that are set, as signed and shown: ``{"min": 0.92}``."""
        return {r: v for r in self.RULES if (v := getattr(self, r)) is not None}

    def describe(self) -> str:
        """``accuracy >= 0.92, accuracy >= running - 0.01`` (for inspect)."""
        parts = []
        for rule, v in self.rules().items():
            op = ">=" if rule.startswith("min") else "<="
            parts.append(f"{self.metric} {op} {_f(v)}" if "delta" not in rule
                         else f"{self.metric} {op} running {'+' if v >= 0 else '-'} {_f(abs(v))}")
        return ", ".join(parts)


def judge(thresholds: Sequence[Threshold], values: Mapping[str, float | None], *,
          baseline: Mapping[str, float] | None = None, baseline_name: str = "the running release",
          no_baseline: str = "no recorded result of the running release on this set"
          ) -> list[dict[str, Any]]:
    """One check per rule: ``{"metric", "rule", "value", "ok", "reason"}``, JSON-ready.

    A relative rule without a baseline value is not applied: its check has
    ``ok`` None and says why (``no_baseline``). A metric without a value (no
    samples, non-finite outputs) fails every rule on it.
    """
    checks = []
    for t in thresholds:
        value = values.get(t.metric)
        for rule, bound in t.rules().items():
            check: dict[str, Any] = {"metric": t.metric, "rule": rule, "bound": bound,
                                     "value": value, "ok": True, "reason": None}
            checks.append(check)
            if value is None or not math.isfinite(value):
                check.update(ok=False, reason=f"{t.metric} has no value ({rule} {_f(bound)})")
                continue
            if rule in ("min", "max"):
                ok = value >= bound if rule == "min" else value <= bound
                if not ok:
                    check.update(ok=False, reason=f"{t.metric} {_f(value)} "
                                 f"{'<' if rule == 'min' else '>'} {rule} {_f(bound)}")
                continue
            base = (baseline or {}).get(t.metric)
            if base is None:
                check.update(ok=None, reason=f"{t.metric} {rule} not applied: {no_baseline}")
                continue
            check["baseline"] = base
            limit = base + bound
            ok = value >= limit if rule == "min_delta" else value <= limit
            if not ok:
                check.update(ok=False, reason=(
                    f"{t.metric} {_f(value)} {'<' if rule == 'min_delta' else '>'} {_f(limit)} "
                    f"({baseline_name}'s {_f(base)} with {rule} {_f(bound)})"))
    return checks


def _f(v: float) -> str:
    return f"{v:.4g}"
