"""The release spec (``airlock.yaml``) a test builds from, with a real ONNX model.

    spec = write_spec(tmp_path, sequence=2, scale=3.0)   # model-vision-2/ + vision-2.yaml
    run_airlock("build", spec, "--key", keys.release_key, "-o", tmp_path / "v2.airlock")
"""

from __future__ import annotations

from pathlib import Path

from scripts import modelkit


def write_spec(
    directory: Path,
    *,
    name: str = "vision",
    version: str = "1.0",
    sequence: int = 1,
    scale: float = 2.0,
    wrong: bool = False,
    pad_mb: int = 0,
    hang: bool = False,
    extra_health: str = "",
    extra: str = "",
    expires: str = "30d",
) -> Path:
    """A real model (+ golden data from onnxruntime) and a spec naming it."""
    model_dir = directory / f"model-{name}-{sequence}"
    modelkit.make(model_dir, scale, wrong=wrong, pad_mb=pad_mb, hang=hang)
    spec = directory / f"{name}-{sequence}.yaml"
    spec.write_text(
        f'name: {name}\nversion: "{version}"\nsequence: {sequence}\nexpires: {expires}\n'
        f"models:\n  - name: detector\n    path: {model_dir.name}/model.onnx\n    health:\n"
        f"      inputs: {model_dir.name}/inputs.npz\n      outputs: {model_dir.name}/outputs.npz\n"
        f"      runs: 5\n      timeout_s: 30\n{extra_health}{extra}"
    )
    return spec
