"""End to end: registry -> airlock build -> airlock-agent install -> image sink.

Two images sharing a layer (one OCI, one Docker schema 2) and one model
artifact, all from a registry on loopback. The agent installs the bundle,
the model passes its health check, the images land in the default oci-dir
sink; skopeo reads the images straight out of the bundle; a sink that fails
fails the install with exit 4 and nothing switched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import ocikit
from tests.support.cli import run_agent
from tests.support.keyset import Keys
from tests.support.registry import Content, build_from
from tests.support.spec import write_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundle(content: Content, keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("e2e")
    spec = write_spec(d, name="site", models=[content.model_entry()],
                      images=[content.app, content.worker])
    out = d / "site-1.0.airlock"
    build_from(content.host, keyset, spec, out, d / "cache")
    return out


def test_skopeo_reads_the_bundle(bundle: Path, content: Content) -> None:
    r = ocikit.skopeo("inspect", f"oci-archive:{bundle}:{content.app}")
    assert r.returncode == 0, r.stderr
    assert content.shared_layer in json.loads(r.stdout)["Layers"]


def test_agent_installs_images_into_the_sink_and_checks_the_model(
    bundle: Path, content: Content, keyset: Keys, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    r = run_agent("--root", root, "init", "--trust", keyset.trust, "--device-id", "cam-1")
    assert r.returncode == 0, r.stderr
    r = run_agent("--root", root, "install", bundle, "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(run_agent("--root", root, "status", "--json").stdout)
    assert "site-1" in json.dumps(status)
    images = root / "images"
    app = json.loads(ocikit.skopeo("inspect", f"oci:{images}:{content.app}").stdout)
    assert content.shared_layer in app["Layers"]
    index = json.loads((images / "index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert content.app in names and content.worker in names
    # The shared layer is one file in the sink too.
    assert (images / "blobs/sha256" / content.shared_layer[7:]).is_file()
    r = run_agent("--root", root, "check", "--json")
    assert r.returncode == 0, r.stderr


def test_failed_delivery_is_a_failed_install(bundle: Path, keyset: Keys, tmp_path: Path) -> None:
    root = tmp_path / "root"
    r = run_agent(
        "--root",
        root,
        "init",
        "--trust",
        keyset.trust,
        "--device-id",
        "cam-2",
        "--sink",
        "command",
        "--sink-option",
        "command=sh -c 'exit 7' {archive}",
    )
    assert r.returncode == 0, r.stderr
    r = run_agent("--root", root, "install", bundle)
    assert r.returncode == 4, r.stderr
    assert "exited 7" in r.stderr and "Traceback" not in r.stderr
    assert not (root / "current").exists()
