"""``airlock new DIR``: a starter spec with a tiny real model and its golden data.

The model (``starter_files/model.onnx``, 248 bytes: ``y = x * 2 + 1`` over a
``[1, 16]`` float32 input ``x``) was written once by ``scale_model(2.0)`` of
``scripts/modelkit.py`` (``tests/bundler/test_airlock_new.py`` checks it still
is that model). The bundler does not depend on ``onnx``, so the file ships as
package data; the golden outputs are computed here by ONNX Runtime, the
runtime the health check uses, so ``airlock check`` of the starter passes::

    written = write_starter(Path("vision"), name="vision")
    # vision/airlock.yaml, vision/models/model.onnx, vision/golden/inputs.npz, outputs.npz
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from airlock.errors import PreconditionError, UsageError
from airlock.files import write_atomic
from keys.signed_fields import is_plain_name

__all__ = ["MODEL", "spec_text", "write_starter"]

MODEL = Path(__file__).with_name("starter_files") / "model.onnx"
WIDTH = 16


def spec_text(name: str) -> str:
    """The starter ``airlock.yaml``: every field it uses, with what to change next."""
    return f"""\
# The release spec (docs/spec.md). Check it: airlock check airlock.yaml
name: {name}                  # release name; devices keep the highest sequence per name
version: "0.1.0"              # shown to people; quote it
sequence: 1                   # raise it for every release: devices refuse a lower one
expires: 30d                  # signed metadata stops being accepted after this
models:
  - name: model               # the directory name on the device
    path: models/model.onnx   # replace with your model (y = x * 2 + 1 here)
    health:                   # run on the device before it switches (docs/HEALTH.md)
      inputs: golden/inputs.npz     # golden inputs, by input name
      outputs: golden/outputs.npz   # what the model must answer to them
      runs: 20
      timeout_s: 60
# images: [registry.local:5000/app:1.0]   # container images (docs/REGISTRIES.md)
"""


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _golden(model: bytes) -> tuple[bytes, bytes]:
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((1, WIDTH)).astype(np.float32)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (y,) = session.run(["y"], {"x": x})
    return _npz(x=x), _npz(y=np.asarray(y))


def write_starter(directory: Path, name: str) -> list[Path]:
    """The starter's files in ``directory`` (made if missing); refuses to overwrite a spec."""
    if not is_plain_name(name):
        raise UsageError(f"release name {name!r} is not a plain name (letters, digits, . _ -)")
    spec = directory / "airlock.yaml"
    files = [spec, directory / "models" / "model.onnx", directory / "golden" / "inputs.npz",
             directory / "golden" / "outputs.npz"]
    there = [str(p) for p in files if p.exists()]
    if there:
        raise PreconditionError(f"{there[0]} already exists: airlock new writes only into "
                                "a new or empty project")
    model = MODEL.read_bytes()
    inputs, outputs = _golden(model)
    for path, data in zip(files, (spec_text(name).encode(), model, inputs, outputs), strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    return files
