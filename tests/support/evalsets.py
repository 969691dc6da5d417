"""Models with labelled evaluation sets (scripts/evalkit.py) for specs, and their metrics by numpy.

    model = eval_model(tmp_path / "v2", perturb=0.5, metrics={"accuracy": {"min": 0.92}})
    spec = write_spec(tmp_path, sequence=2, models=[model])          # tests.support.spec
    expected = numpy_metrics(tmp_path / "v2")                        # {"accuracy": 0.8695, ...}
    write_tiled_npz(big / "eval_data.npz", {"x": x}, repeat=2500)    # never whole in memory

``numpy_metrics`` computes what the device should report straight from the
model's weights and the set, without ONNX Runtime or airlock.quality.evaluation,
so a test compares two independent computations.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from scripts import evalkit


def eval_model(directory: Path, *, name: str = "classifier", kind: str = "classifier",
               perturb: float = 0.0, samples: int = 2000, batch: int = 64,
               metrics: Mapping[str, Any] | None = None, health: Mapping[str, Any] | None = None,
               evaluate: Mapping[str, Any] | None = None,
               contract: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Make the model in ``directory`` and return its spec entry (absolute paths)."""
    evalkit.make(directory, kind, samples=samples, perturb_scale=perturb)
    default = ({"accuracy": {"min": 0.92}} if kind == "classifier" else {"mae": {"max": 0.05}})
    entry: dict[str, Any] = {
        "name": name,
        "path": str(directory / "model.onnx"),
        "health": {"inputs": str(directory / "inputs.npz"),
                   "outputs": str(directory / "outputs.npz"), "runs": 3, "timeout_s": 60,
                   **(health or {})},
        "evaluate": {"data": str(directory / "eval_data.npz"),
                     "labels": str(directory / "eval_labels.npz"), "batch": batch,
                     "metrics": dict(metrics or default), **(evaluate or {})},
    }
    if contract is not None:
        entry["inputs_contract"] = dict(contract)
    return entry


def numpy_metrics(directory: Path, max_samples: int | None = None) -> dict[str, Any]:
    """The set's metrics for the model in ``directory``, by numpy from its weights."""
    w = evalkit.weights(directory / "model.onnx")
    x = np.load(directory / "eval_data.npz")["x"][:max_samples].astype(np.float64)
    labels = np.load(directory / "eval_labels.npz")
    if "probs" in labels:
        truth = labels["probs"][:max_samples]
        scores = x @ w["W"] + w["b"]
        pred = scores.argmax(axis=1)
        classes = scores.shape[1]
        cm = np.zeros((classes, classes), np.int64)
        np.add.at(cm, (truth, pred), 1)
        tp = np.diag(cm)
        precision = tp / np.maximum(cm.sum(axis=0), 1)
        recall = tp / np.maximum(cm.sum(axis=1), 1)
        f1 = np.where(precision + recall > 0,
                      2 * precision * recall / np.maximum(precision + recall, 1e-300), 0)
        top5 = np.argsort(-scores, axis=1)[:, :5]
        return {"accuracy": float((pred == truth).mean()),
                "top5_accuracy": float((top5 == truth[:, None]).any(axis=1).mean()),
                "f1_macro": float(f1.mean()), "recall_macro": float(recall.mean()),
                "precision_macro": float(precision.mean()), "f1": f1.tolist(),
                "confusion": cm.tolist()}
    y = labels["y"][:max_samples].astype(np.float64)
    err = (x @ w["W"] + w["b"]) - y
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "r2": float(1 - (err ** 2).sum() / ((y - y.mean()) ** 2).sum())}


def write_tiled_npz(path: Path, arrays: Mapping[str, np.ndarray], repeat: int) -> int:
    """An uncompressed ``.npz`` of each array repeated ``repeat`` times along its rows.

    Written member by member, one copy at a time, so a set larger than the
    test's own memory can be made. Returns the file's size.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in arrays.items():
            a = np.ascontiguousarray(a)
            with zf.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_2_0(f, {
                    "descr": np.lib.format.dtype_to_descr(a.dtype), "fortran_order": False,
                    "shape": (a.shape[0] * repeat, *a.shape[1:])})
                data = a.tobytes()
                for _ in range(repeat):
                    f.write(data)
    return path.stat().st_size
