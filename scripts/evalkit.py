"""Real models whose quality is known, with labelled evaluation sets, for the demo and tests.

    python scripts/evalkit.py OUT_DIR --kind classifier [--samples 10000] [--perturb 0.6]
    python scripts/evalkit.py OUT_DIR --kind regressor
    python scripts/evalkit.py SAMPLES_DIR --site-samples 500 [--shift 2.0]

writes OUT_DIR/model.onnx (built with the ``onnx`` package, weights fitted
with numpy on synthetic data), OUT_DIR/inputs.npz and OUT_DIR/outputs.npz
(golden data of four samples, computed by onnxruntime from this very model,
so the golden check passes whatever the weights), and the evaluation set
OUT_DIR/eval_data.npz with OUT_DIR/eval_labels.npz (numpy.savez: stored, so
it streams without decompression).

* classifier: 10 Gaussian classes in 16 dimensions; linear discriminant
  analysis fitted in closed form; ``x`` [batch, 16] float32 -> ``probs`` [batch, 10];
  labels are class numbers under the name ``probs``. Accuracy is about 0.96.
* regressor: ``y = x . w + b + noise`` in 8 dimensions, fitted by least
  squares; ``x`` [batch, 8] -> ``y`` [batch, 1]; MAE about 0.016, R² above 0.99.

``--perturb S`` adds Gaussian noise of scale S (times the weights' own
spread) to the fitted weights, deterministically: the model still loads,
runs and passes its golden check, but scores worse, as a badly quantised or
wrongly converted model does. The training and evaluation sets are drawn
from different seeds.

``--site-samples N`` writes no model: N classifier inputs a site sees, as an
application drops them for the shadow check (``ROOT/samples/MODEL/``), in
files of 50 rows (``site-000.npz`` oldest). ``--shift S`` adds S to every
feature: a site whose inputs are not what headquarters evaluated on, where a
perturbed model that still scores well on the evaluation set disagrees with
the fitted one far more often.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = 10
# Distance of the class centres: sets how separable the classes are (accuracy ~0.95).
SPREAD = 0.9
FEATURES = {"classifier": 16, "regressor": 8}
_TRAIN_SEED, _EVAL_SEED, _CENTRES_SEED, _PERTURB_SEED, _SITE_SEED = 1, 2, 3, 4, 5
SITE_FILE_ROWS = 50


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of 10 Gaussian classes around fixed centres, and their labels."""
    centres = np.random.default_rng(_CENTRES_SEED).standard_normal((CLASSES, 16)) * SPREAD
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    x = centres[labels] + rng.standard_normal((n, 16))
    return x.astype(np.float32), labels.astype(np.int64)


def _line(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    w = np.linspace(-1.0, 1.0, 8)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8))
    y = x @ w + 0.5 + rng.normal(0.0, 0.02, n)
    return x.astype(np.float32), y.reshape(n, 1).astype(np.float32)


def fit_classifier() -> tuple[np.ndarray, np.ndarray]:
    """Linear discriminant analysis (closed form): W [16, 10], b [10].

    Class means and the pooled covariance of the training set give
    ``W = inv(cov) @ means.T`` and ``b = -0.5 * diag(means @ W) + log(prior)``;
    a softmax of ``x @ W + b`` is then the class posterior.
    """
    x, labels = _blobs(5000, _TRAIN_SEED)
    x64 = x.astype(np.float64)
    means = np.stack([x64[labels == c].mean(axis=0) for c in range(CLASSES)])
    centred = x64 - means[labels]
    cov = centred.T @ centred / (len(x64) - CLASSES)
    w = np.linalg.solve(cov, means.T)
    prior = np.bincount(labels, minlength=CLASSES) / len(labels)
    b = -0.5 * np.einsum("ck,kc->c", means, w) + np.log(prior)
    return w.astype(np.float32), b.astype(np.float32)


def fit_regressor() -> tuple[np.ndarray, np.ndarray]:
    """Least squares: W [8, 1], b [1]."""
    x, y = _line(5000, _TRAIN_SEED)
    design = np.hstack([x, np.ones((len(x), 1), np.float32)]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)
    return coef[:-1].astype(np.float32), coef[-1].astype(np.float32)


def perturb(w: np.ndarray, b: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_PERTURB_SEED)
    spread = float(w.std()) or 1.0
    return ((w + rng.standard_normal(w.shape) * spread * scale).astype(np.float32),
            (b + rng.standard_normal(b.shape) * spread * scale).astype(np.float32))


def classifier_model(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    probs = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", CLASSES])
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "classifier", [x], [probs],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def regressor_model(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["y"])],
        "regressor", [x], [y],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b.reshape(1), "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def eval_set(kind: str, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation inputs and labels (drawn apart from the training set)."""
    return _blobs(samples, _EVAL_SEED) if kind == "classifier" else _line(samples, _EVAL_SEED)


def make(out_dir: Path, kind: str = "classifier", *, samples: int = 2000,
         perturb_scale: float = 0.0) -> Path:
    """Write the model, its golden data and its evaluation set; returns the model's path."""
    if kind not in FEATURES:
        raise ValueError(f"kind must be one of {', '.join(FEATURES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    w, b = fit_classifier() if kind == "classifier" else fit_regressor()
    if perturb_scale:
        w, b = perturb(w, b, perturb_scale)
    model = classifier_model(w, b) if kind == "classifier" else regressor_model(w, b)
    path = out_dir / "model.onnx"
    onnx.save(model, str(path))
    x, labels = eval_set(kind, samples)
    output = "probs" if kind == "classifier" else "y"
    np.savez(out_dir / "eval_data.npz", x=x)
    named: dict[str, Any] = {output: labels}
    np.savez(out_dir / "eval_labels.npz", **named)
    _golden(path, out_dir, x[:4], output)
    return path


def _golden(model: Path, out_dir: Path, x: np.ndarray, output: str) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (y,) = session.run([output], {"x": x})
    np.savez(out_dir / "inputs.npz", x=x)
    named: dict[str, Any] = {output: y}
    np.savez(out_dir / "outputs.npz", **named)


def write_site_samples(folder: Path, n: int, *, shift: float = 0.0) -> list[Path]:
    """``n`` classifier inputs in files of SITE_FILE_ROWS rows, oldest first (older mtimes)."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    x = _blobs(n, _SITE_SEED)[0] + np.float32(shift)
    paths = []
    for i, start in enumerate(range(0, n, SITE_FILE_ROWS)):
        path = folder / f"site-{i:03d}.npz"
        np.savez(path, x=x[start:start + SITE_FILE_ROWS])
        os.utime(path, ns=(1_700_000_000_000_000_000 + i * 10**9,) * 2)  # newest last
        paths.append(path)
    return paths


def weights(model: Path) -> dict[str, Any]:
    """The model's initializers as arrays (for tests that compute its metrics with numpy)."""
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(model)).graph.initializer}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--kind", choices=sorted(FEATURES), default="classifier")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--perturb", type=float, default=0.0, metavar="SCALE")
    p.add_argument("--site-samples", type=int, default=0, metavar="N")
    p.add_argument("--shift", type=float, default=0.0)
    a = p.parse_args()
    if a.site_samples:
        print(len(write_site_samples(a.out_dir, a.site_samples, shift=a.shift)), "files")
        return
    print(make(a.out_dir, a.kind, samples=a.samples, perturb_scale=a.perturb))


if __name__ == "__main__":
    main()
