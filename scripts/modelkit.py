"""Small real ONNX models and golden data for the demo, tests and benchmarks.

    python scripts/modelkit.py OUT_DIR --scale 2.0 [--wrong] [--pad-mb 500] [--external]

writes OUT_DIR/model.onnx (y = x * scale + 1 over a [1, 16] float32 input,
built with the ``onnx`` package), OUT_DIR/inputs.npz and OUT_DIR/outputs.npz
(golden outputs computed by onnxruntime). ``--wrong`` writes golden outputs
that the model does not produce; ``--pad-mb`` adds an unused initializer so
the model file has a realistic size; ``--hang`` makes a model whose inference
never finishes in practice (a Loop of 2**62 iterations); ``--junk`` makes
a well-formed ONNX file that ONNX Runtime refuses to load (a node of an
operator that does not exist), with the golden data of the good model; ``--external``
keeps every initializer in OUT_DIR/model.onnx.data, ONNX external data as
models over 2 GB must.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WIDTH = 16


def scale_model(scale: float, pad_mb: int = 0, seed: int = 0) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, WIDTH])
    inits = [
        numpy_helper.from_array(np.full((1, WIDTH), scale, np.float32), "k"),
        numpy_helper.from_array(np.ones((1, WIDTH), np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["xk"]),
        helper.make_node("Add", ["xk", "b"], ["y"]),
    ]
    if pad_mb:
        # Random, so the file neither compresses nor dedupes: like real weights.
        rng = np.random.default_rng(seed)
        pad = rng.standard_normal(pad_mb * 1024 * 1024 // 4, dtype=np.float32)
        inits.append(numpy_helper.from_array(pad, "padding"))
    graph = helper.make_graph(nodes, "scale", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def hang_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, WIDTH])
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1, WIDTH]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1, WIDTH]),
        ],
        [numpy_helper.from_array(np.ones((1, WIDTH), np.float32), "one")],
    )
    inits = [
        numpy_helper.from_array(np.array(2**62, np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "cond"),
    ]
    loop = helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)
    graph = helper.make_graph([loop], "hang", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def golden(model_path: Path, out_dir: Path, wrong: bool = False) -> None:
    import onnxruntime as ort

    rng = np.random.default_rng(42)
    x = rng.standard_normal((1, WIDTH)).astype(np.float32)
    np.savez(out_dir / "inputs.npz", x=x)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    if wrong:
        y = y + 1.0
    np.savez(out_dir / "outputs.npz", y=y)


def save(model: onnx.ModelProto, path: Path, *, external: bool = False) -> None:
    """Write ``model``; with ``external``, its initializers go to ``PATH.data`` beside it."""
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))


def make(
    out_dir: Path, scale: float = 2.0, *, wrong: bool = False, pad_mb: int = 0, hang: bool = False,
    external: bool = False, junk: bool = False,
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    if junk:
        model = scale_model(scale, pad_mb)
        save(model, path)
        golden(path, out_dir)
        model.graph.node[0].op_type = "NoSuchOperator"
        save(model, path, external=external)
        return path
    if hang:
        save(hang_model(), path, external=external)
        x = np.zeros((1, WIDTH), np.float32)
        np.savez(out_dir / "inputs.npz", x=x)
        np.savez(out_dir / "outputs.npz", y=x)
        return path
    save(scale_model(scale, pad_mb), path, external=external)
    golden(path, out_dir, wrong)
    return path


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out_dir", type=Path)
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--wrong", action="store_true")
    p.add_argument("--hang", action="store_true")
    p.add_argument("--pad-mb", type=int, default=0)
    p.add_argument("--external", action="store_true")
    p.add_argument("--junk", action="store_true")
    a = p.parse_args()
    print(make(a.out_dir, a.scale, wrong=a.wrong, pad_mb=a.pad_mb, hang=a.hang,
               external=a.external, junk=a.junk))


if __name__ == "__main__":
    main()
