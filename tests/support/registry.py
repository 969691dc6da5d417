"""Registry content for the integration tests, and ``airlock build`` against it.

    need_tools("docker-registry", "skopeo")          # skip (or, under CI=true, fail) without them
    with ocikit.Registry.start(tmp) as reg:
        content = push_content(reg, tmp / "content")   # two images, a multi-arch index, a model
        build_from(content.host, keys, spec, out, tmp / "cache")

Images are OCI layouts written directly and pushed with ``skopeo copy`` (one
also converted to Docker schema 2, one a multi-arch index); the model artifact
is pushed with oras, as ``oras push`` would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scripts import modelkit, ocikit
from tests.support.cli import run_airlock
from tests.support.keyset import Keys

TOOLS = {"docker-registry": ocikit.REGISTRY_BIN, "skopeo": "skopeo", "umoci": "umoci",
         "promtool": "promtool", "chromium": "chromium"}


def need_tools(*names: str) -> None:
    """Skip the test when a tool of ``TOOLS`` is missing; under ``CI=true`` fail instead."""
    missing = [n for n in names if not shutil.which(TOOLS[n])]
    if not missing:
        return
    packages = {"promtool": "prometheus"}
    why = (f"{', '.join(missing)} not installed "
           f"(apt-get install {' '.join(packages.get(n, n) for n in missing)})")
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {why}")
    pytest.skip(why)


@dataclass
class Content:
    host: str
    app: str  # OCI image, shares its base layer with worker
    worker: str  # Docker schema 2 image
    multi: str  # multi-arch index: linux/amd64 + linux/arm64
    model: str  # oras artifact: model.onnx, inputs.npz, outputs.npz
    model_dir: Path
    shared_layer: str  # digest of the layer app and worker share

    def model_entry(self) -> dict[str, Any]:
        """The spec's entry for the model artifact, golden data taken from inside it."""
        return {"name": "detector", "ref": self.model,
                "health": {"inputs": "inputs.npz", "outputs": "outputs.npz"}}


def push_content(registry: ocikit.Registry, work: Path) -> Content:
    """Push the images and the model artifact the registry tests build from."""
    base = ocikit.random_layer(256 * 1024, seed=1, name="base/lib.bin")
    app_top = ocikit.random_layer(64 * 1024, seed=2, name="app/bin")
    worker_top = ocikit.random_layer(64 * 1024, seed=3, name="worker/bin")
    host = registry.host
    ocikit.push(
        ocikit.write_image(work / "app", "1.0", [base, app_top]), "1.0", f"{host}/site/app:1.0"
    )
    ocikit.push(
        ocikit.write_image(work / "worker", "2.0", [base, worker_top]),
        "2.0",
        f"{host}/site/worker:2.0",
        fmt="v2s2",
    )
    arm = ocikit.random_layer(32 * 1024, seed=5, name="arm/bin")
    amd = ocikit.random_layer(32 * 1024, seed=4, name="amd/bin")
    ocikit.push(
        ocikit.write_multiarch(work / "multi", "3", {"amd64": [amd], "arm64": [arm]}),
        "3",
        f"{host}/site/multi:3",
        all_platforms=True,
    )
    model_dir = work / "model"
    modelkit.make(model_dir, 2.0)
    ocikit.push_model(
        host,
        "models/detector:1.0",
        [model_dir / "model.onnx", model_dir / "inputs.npz", model_dir / "outputs.npz"],
    )
    return Content(
        host,
        f"{host}/site/app:1.0",
        f"{host}/site/worker:2.0",
        f"{host}/site/multi:3",
        f"oci://{host}/models/detector:1.0",
        model_dir,
        base.digest,
    )


def run_build(
    registry_host: str, keys: Keys, spec: Path, out: Path, cache: Path, *extra: Any
) -> subprocess.CompletedProcess[str]:
    """``airlock build`` of a spec that pulls from the loopback registry."""
    return run_airlock(
        "build",
        spec,
        "--key",
        keys.release_key,
        "-o",
        out,
        "--insecure",
        registry_host,
        "--cache",
        cache,
        *extra,
    )


def build_from(
    registry_host: str, keys: Keys, spec: Path, out: Path, cache: Path, *extra: Any
) -> str:
    """:func:`run_build` that must succeed; its stdout."""
    r = run_build(registry_host, keys, spec, out, cache, *extra)
    assert r.returncode == 0, r.stderr
    return r.stdout
