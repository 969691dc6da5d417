"""A real registry on loopback, and real content in it.

Debian's ``docker-registry`` runs on 127.0.0.1 with storage in a temp dir;
images are OCI layouts written directly and pushed with ``skopeo copy``
(one also converted to Docker schema 2, one a multi-arch index); the model
artifact is pushed with oras. Without the tools the tests skip and say
why, except under CI (``CI=true``), where a missing tool is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import modelkit
import ocikit
import pytest

TOOLS = {"docker-registry": ocikit.REGISTRY_BIN, "skopeo": "skopeo", "umoci": "umoci"}


def need_tools(*names: str) -> None:
    missing = [n for n in names if not shutil.which(TOOLS[n])]
    if not missing:
        return
    why = f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ocikit.Registry]:
    need_tools("docker-registry", "skopeo")
    with ocikit.Registry.start(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@dataclass
class Content:
    host: str
    app: str  # OCI image, shares its base layer with worker
    worker: str  # Docker schema 2 image
    multi: str  # multi-arch index: linux/amd64 + linux/arm64
    model: str  # oras artifact: model.onnx, inputs.npz, outputs.npz
    model_dir: Path
    shared_layer: str  # digest of the layer app and worker share


@pytest.fixture(scope="session")
def content(registry: ocikit.Registry, tmp_path_factory: pytest.TempPathFactory) -> Content:
    work = tmp_path_factory.mktemp("content")
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
    registry_host: str, keys: Any, spec: Path, out: Path, cache: Path, *extra: Any
) -> subprocess.CompletedProcess[str]:
    """``airlock build`` of a spec that pulls from the loopback registry."""
    from tests.conftest import run_airlock

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
    registry_host: str, keys: Any, spec: Path, out: Path, cache: Path, *extra: Any
) -> str:
    """:func:`run_build` that must succeed; its stdout."""
    r = run_build(registry_host, keys, spec, out, cache, *extra)
    assert r.returncode == 0, r.stderr
    return r.stdout
