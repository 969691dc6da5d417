"""Encrypted bundles (issue 30): ocicrypt's scheme, to named device recipients.

One bundle of an OCI image and a model artifact from the loopback registry,
encrypted to two devices' signed inventories: both install it, a third is
refused (exit 3, nothing changed); skopeo decrypts the image straight out of
the bundle with a device's private key; no plaintext of the model is
anywhere in the bundle's bytes; a flipped ciphertext byte is exit 3.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import ocikit
from tests.support.cli import run_agent, run_airlock
from tests.support.keyset import Keys
from tests.support.registry import Content, build_from
from tests.support.spec import write_spec

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Site:
    dir: Path
    bundle: Path
    devices: dict[str, Path]  # device id -> its freshly initialised ROOT, nothing installed


def _device(d: Path, keyset: Keys, name: str) -> Path:
    root = d / name
    r = run_agent("--root", root, "init", "--trust", keyset.trust, "--device-id", name)
    assert r.returncode == 0, r.stderr
    return root


@pytest.fixture(scope="module")
def site(content: Content, keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Site:
    d = tmp_path_factory.mktemp("encrypted")
    devices = {name: _device(d, keyset, name) for name in ("cam-1", "cam-2", "cam-3")}
    for name in ("cam-1", "cam-2"):
        r = run_agent("--root", devices[name], "inventory", "-o", d / f"{name}.json")
        assert r.returncode == 0, r.stderr
    spec = write_spec(d, name="site", models=[content.model_entry()], images=[content.app])
    out = d / "site-1.0.airlock"
    build_from(content.host, keyset, spec, out, d / "cache",
               "--encrypt-to", d / "cam-1.json", "--encrypt-to", d / "cam-2.json")
    return Site(d, out, devices)


def _fresh(site: Site, keyset: Keys, tmp_path: Path, name: str) -> Path:
    """A copy of a device's initialised ROOT (keys included), for a test to change."""
    root = tmp_path / name
    shutil.copytree(site.devices[name], root, symlinks=True)
    return root


def test_both_recipients_install_and_a_third_device_is_refused(
        site: Site, content: Content, keyset: Keys, tmp_path: Path) -> None:
    clear = json.loads(ocikit.skopeo("inspect", "--tls-verify=false",
                                     f"docker://{content.app}").stdout)["Layers"]
    for name in ("cam-1", "cam-2"):
        root = _fresh(site, keyset, tmp_path, name)
        r = run_agent("--root", root, "install", site.bundle, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["active"] == "site-1"
        # The image sink holds the image decrypted: its clear layers, as pulled.
        app = json.loads(ocikit.skopeo("inspect", f"oci:{root / 'images'}:{content.app}").stdout)
        assert app["Layers"] == clear
        # A relay on this device does not offer it: it holds the release decrypted.
        from agent.layout import Layout
        from agent.observe.relay import held_releases

        assert [h.id for h in held_releases(Layout(root))] == []
    outsider = _fresh(site, keyset, tmp_path, "cam-3")
    r = run_agent("--root", outsider, "install", site.bundle)
    assert r.returncode == 3
    assert "encrypted to cam-1" in r.stderr and "not to this device" in r.stderr
    assert "nothing changed" in r.stderr
    assert not list((outsider / "blobs" / "sha256").iterdir())
    status = json.loads(run_agent("--root", outsider, "status", "--json").stdout)
    assert status["active"] is None


def test_inspect_names_the_recipients_without_any_key(site: Site) -> None:
    r = run_airlock("inspect", site.bundle, "--json")
    assert r.returncode == 0, r.stderr
    enc = json.loads(r.stdout)["encryption"]
    assert [x["name"] for x in enc["recipients"]] == ["cam-1", "cam-2"]
    assert enc["blobs"] >= 3  # the image's layers, the model and its golden data


def test_skopeo_decrypts_the_image_out_of_the_bundle(
        site: Site, content: Content, tmp_path: Path) -> None:
    clear = json.loads(ocikit.skopeo("inspect", "--tls-verify=false",
                                     f"docker://{content.app}").stdout)
    encrypted = json.loads(ocikit.skopeo("inspect", f"oci-archive:{site.bundle}:{content.app}",
                                         "--raw").stdout)
    assert all(layer["mediaType"].endswith("+encrypted") for layer in encrypted["layers"])
    assert not {layer["digest"] for layer in encrypted["layers"]} & set(clear["Layers"])
    key = site.devices["cam-2"] / "device-encryption.key"
    out = tmp_path / "decrypted"
    r = ocikit.skopeo("copy", "--quiet", "--decryption-key", str(key),
                      f"oci-archive:{site.bundle}:{content.app}", f"dir:{out}")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [layer["digest"] for layer in manifest["layers"]] == clear["Layers"]
    for digest in clear["Layers"]:
        assert (out / digest[7:]).is_file()
    # Without a recipient's key it cannot.
    other = tmp_path / "other"
    r = ocikit.skopeo("copy", "--quiet", "--decryption-key",
                      str(site.devices["cam-3"] / "device-encryption.key"),
                      f"oci-archive:{site.bundle}:{content.app}", f"dir:{other}")
    assert r.returncode != 0


def test_no_plaintext_of_the_model_is_in_the_bundle(site: Site, content: Content) -> None:
    data = site.bundle.read_bytes()
    model = (content.model_dir / "model.onnx").read_bytes()
    weights = max(range(0, len(model) - 32, 16), key=lambda i: len(set(model[i:i + 32])))
    pattern = model[weights:weights + 32]  # the most varied 32 bytes: weights, not names
    assert len(set(pattern)) > 8
    assert pattern not in data
    golden = (content.model_dir / "inputs.npz").read_bytes()
    assert golden[-200:-100] not in data


def test_a_flipped_ciphertext_byte_is_exit_3(site: Site, keyset: Keys, tmp_path: Path) -> None:
    bad = tmp_path / "flipped.airlock"
    shutil.copyfile(site.bundle, bad)
    with tarfile.open(site.bundle) as tar:
        biggest = max((m for m in tar.getmembers() if m.name.startswith("blobs/")),
                      key=lambda m: m.size)
    with bad.open("r+b") as f:
        f.seek(biggest.offset_data + biggest.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    root = _fresh(site, keyset, tmp_path, "cam-1")
    r = run_agent("--root", root, "install", bad)
    assert r.returncode == 3, r.stderr
    assert "sha256" in r.stderr or "digest" in r.stderr
    status = json.loads(run_agent("--root", root, "status", "--json").stdout)
    assert status["active"] is None
