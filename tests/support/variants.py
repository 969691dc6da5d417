"""A model in three variants for the device-class tests: fp32, and int8 and arm64 (unsigned,
per channel) made from it with ``onnxruntime.quantization``, each with golden outputs of its own.

    d = make_variants(tmp_path / "models")   # fp32/int8/arm64.onnx, inputs.npz, out-*.npz
    spec = variant_spec(tmp_path, d, [{"when": {"labels": {"npu": "hailo"}}, "file": "int8"},
                                      {"when": {}, "file": "fp32"}])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

WIDTH = 256  # weights of WIDTH x WIDTH: 256 KiB in fp32, 64 KiB in int8


def make_variants(out: Path) -> Path:
    """Write the fp32 model, its int8 quantisation and golden data for each; ``out``."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(27)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (WIDTH, WIDTH)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.ones((1, WIDTH), np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, WIDTH])],
        [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out / "fp32.onnx")
    quantize_dynamic(str(out / "fp32.onnx"), str(out / "int8.onnx"), weight_type=QuantType.QInt8)
    # arm64's own build: unsigned weights quantised per output channel, other bytes and goldens.
    quantize_dynamic(str(out / "fp32.onnx"), str(out / "arm64.onnx"), weight_type=QuantType.QUInt8,
                     per_channel=True)
    x = rng.normal(0, 1, (1, WIDTH)).astype(np.float32)
    np.savez(out / "inputs.npz", x=x)
    for kind in ("fp32", "int8", "arm64"):
        session = ort.InferenceSession(str(out / f"{kind}.onnx"),
                                       providers=["CPUExecutionProvider"])
        np.savez(out / f"out-{kind}.npz", y=session.run(None, {"x": x})[0])
    return out


def variant_spec(directory: Path, models: Path, variants: Sequence[dict[str, Any]], *,
                 sequence: int = 1, name: str = "vision") -> Path:
    """A spec whose one model ``detector`` has ``variants`` (``file``: fp32, int8 or arm64)."""
    entries = []
    for v in variants:
        kind = v["file"]
        entry: dict[str, Any] = {"name": v.get("name", kind), "when": v["when"],
                                 "path": str(models / f"{kind}.onnx"),
                                 "health": {"inputs": str(models / "inputs.npz"),
                                            "outputs": str(models / f"out-{kind}.npz"),
                                            "runs": 3, "atol": 0.05}}
        if "providers" in v:  # a build for other hardware: its execution providers
            entry["health"]["providers"] = v["providers"]
        if "variant_providers" in v:  # the same, as the variant's own word (issue 27's YAML)
            entry["providers"] = v["variant_providers"]
        entries.append(entry)
    doc = {"name": name, "version": "1.0", "sequence": sequence, "expires": "30d",
           "models": [{"name": "detector", "variants": entries}]}
    path = directory / f"{name}-{sequence}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
