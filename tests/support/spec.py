"""The release spec (``airlock.yaml``) every test writes, and the in-process build of it.

``write_spec`` is the one writer of specs in the suite. By default it makes a
real ONNX model with golden data (scripts/modelkit.py) and names it::

    spec = write_spec(tmp_path, sequence=2, scale=3.0)        # model-vision-2/ + vision-2.yaml
    spec = write_spec(tmp_path, hang=True, timeout_s=3, health={"max_memory_mb": 5},
                      extra={"rings": ["canary"], "hooks": {"probe": "false"}})
    spec = write_spec(tmp_path, name="site", models=[], images=["127.0.0.1:5000/app:1"])
    spec = write_spec(tmp_path, text="name: v\\nversion: [\\n", file_name="airlock.yaml")
    bundle = build(spec, tmp_path / "v2.airlock", [keys.release_key])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from scripts import modelkit


def write_spec(
    directory: Path,
    *,
    name: str = "vision",
    version: str = "1.0",
    sequence: int = 1,
    expires: str = "30d",
    models: Sequence[Mapping[str, Any]] | None = None,
    images: Sequence[str | Mapping[str, Any]] = (),
    extra: Mapping[str, Any] | None = None,
    scale: float = 2.0,
    wrong: bool = False,
    pad_mb: int = 0,
    hang: bool = False,
    junk: bool = False,
    runs: int = 5,
    timeout_s: float = 30,
    health: Mapping[str, Any] | None = None,
    text: str | None = None,
    file_name: str | None = None,
) -> Path:
    """Write ``directory/FILE_NAME`` (default ``NAME-SEQUENCE.yaml``) and return its path.

    ``models=None`` means one local model, ``detector``, made here by
    ``modelkit.make(scale, wrong=, pad_mb=, hang=, junk=)`` with its golden data and
    a health section of ``runs``, ``timeout_s`` and ``health``; a list of
    model entries (e.g. registry refs) is written as given, no model made.
    ``extra`` adds top-level fields (flags, hooks, rings). ``text`` is written
    verbatim instead (for specs that must be wrong); it defaults to the name
    ``airlock.yaml``.
    """
    if text is not None:
        path = directory / (file_name or "airlock.yaml")
        path.write_text(text)
        return path
    if models is None:
        model_dir = directory / f"model-{name}-{sequence}"
        modelkit.make(model_dir, scale, wrong=wrong, pad_mb=pad_mb, hang=hang, junk=junk)
        models = [{
            "name": "detector",
            "path": f"{model_dir.name}/model.onnx",
            "health": {
                "inputs": f"{model_dir.name}/inputs.npz",
                "outputs": f"{model_dir.name}/outputs.npz",
                "runs": runs,
                "timeout_s": timeout_s,
                **(health or {}),
            },
        }]
    doc: dict[str, Any] = {"name": name, "version": version, "sequence": sequence,
                           "expires": expires}
    if models:
        doc["models"] = [dict(m) for m in models]
    if images:
        doc["images"] = [i if isinstance(i, str) else dict(i) for i in images]
    doc.update(extra or {})
    path = directory / (file_name or f"{name}-{sequence}.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def spec_doc(model_dir: Path) -> dict[str, Any]:
    """A good spec, as a dict to edit: one real model (``modelkit.make``) with golden data."""
    return {
        "name": "vision", "version": "1.0", "sequence": 7, "expires": "30d",
        "models": [{"name": "detector", "path": str(model_dir / "model.onnx"),
                    "health": {"inputs": str(model_dir / "inputs.npz"),
                               "outputs": str(model_dir / "outputs.npz"), "runs": 3}}],
    }


def build(spec: Path, out: Path, keys: Sequence[Path], *, root_json: bytes | None = None,
          check: bool = False) -> Path:
    """``airlock build`` in-process: ``spec`` signed with the key files ``keys``, to ``out``.

    Without the host's health check unless ``check``: these bundles are made for
    devices, bad models included, and a device's check is what they test.
    """
    from bundler.build.assemble import build_bundle
    from bundler.build.spec import load_spec
    from keys.keyfile import load_signer

    # Any validity left will do: fixtures include releases that expire while a test runs.
    build_bundle(load_spec(spec, min_validity=timedelta(0)), [load_signer(k) for k in keys], out,
                 root_json=root_json, check=check)
    return out
