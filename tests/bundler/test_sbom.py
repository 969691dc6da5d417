"""The SBOM: packages read from image layers, models as ML-BOM components, a valid CycloneDX 1.6.

No registry here: layers are made by scripts/ocikit.py and added to a layout
directly; the registry path is tests/registry/test_supply_chain.py.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import yaml

from airlock.errors import SpecError, UpstreamSignatureError
from bundler.build.assemble import assemble
from bundler.build.layer_packages import Package, image_packages, parse_apk, parse_dist_info
from bundler.build.sbom import bom_json, validate
from bundler.build.spec import load_spec
from keys.release import ImageEntry
from scripts import modelkit, ocikit
from tests.support.cosign import CosignKey
from tests.support.spec import spec_doc, write_spec


def _opener(layer: ocikit.Layer):  # type: ignore[no-untyped-def]
    return lambda: io.BytesIO(layer.data)


def test_installed_debian_packages_are_read_from_a_real_dpkg_status_file() -> None:
    pkgs = image_packages([_opener(ocikit.debian_layer())])
    assert [(p.name, p.version) for p in pkgs] == [
        ("base-files", "12.4+deb12u5"), ("libc6", "2.36-9+deb12u4"), ("zlib1g", "1:1.2.13.dfsg-1")]
    assert pkgs[1] == Package("deb", "libc6", "2.36-9+deb12u4", "amd64", "glibc")


def test_a_later_layer_whiteout_removes_the_package_database() -> None:
    gone = ocikit.files_layer({"var/lib/dpkg/.wh.status": b""})
    assert image_packages([_opener(ocikit.debian_layer()), _opener(gone)]) == []


def test_apk_and_python_databases_and_a_layer_that_is_no_tar() -> None:
    apk = b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:busybox\nV:1.36.1-r5\n\n"
    meta = b"Metadata-Version: 2.1\nName: numpy\nVersion: 1.26.4\n\nLong description: x\n"
    layer = ocikit.files_layer({"lib/apk/db/installed": apk,
                                "usr/lib/python3/site-packages/numpy-1.26.4.dist-info/METADATA":
                                meta})
    pkgs = image_packages([_opener(layer), lambda: io.BytesIO(b"not a tar at all")])
    assert {(p.ecosystem, p.name, p.version) for p in pkgs} == {
        ("apk", "musl", "1.2.4-r2"), ("apk", "busybox", "1.36.1-r5"), ("pypi", "numpy", "1.26.4")}
    assert parse_apk("") == [] and parse_dist_info("Name: x\n") == []


def test_the_sbom_lists_image_packages_and_the_model_card_and_validates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(write_spec(tmp_path, extra={"policy": {"sbom": True}}))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(time.time())))  # rebuilds: the same bytes
    assembled = assemble(spec)
    contents = assembled.contents
    layer = ocikit.debian_layer()
    config = contents.add_bytes("application/vnd.oci.image.config.v1+json", b"{}")
    blob = contents.add_bytes("application/vnd.oci.image.layer.v1.tar+gzip", layer.data)
    manifest = contents.add_bytes("application/vnd.oci.image.manifest.v1+json", b'{"x": 1}')
    image = ImageEntry(ref="reg.example/vision/app:1.4", manifest=manifest.digest,
                       media_type="application/vnd.oci.image.manifest.v1+json",
                       platform="linux/amd64", index=None, blobs=(config.digest, blob.digest))
    text = bom_json(spec, contents, assembled.models, [image])
    validate(text)
    bom = json.loads(text)
    app = next(c for c in bom["components"] if c["type"] == "container")
    assert app["hashes"] == [{"alg": "SHA-256", "content": manifest.digest[7:]}]
    assert "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc" in {
        p["purl"] for p in app["components"]}
    model = next(c for c in bom["components"] if c["type"] == "machine-learning-model")
    props = {p["name"]: p["value"] for p in model["modelCard"]["properties"]}
    assert props["airlock:golden.inputs"].startswith("sha256:")
    assert props["airlock:budget.runs"] == "5"
    assert model["hashes"][0]["content"] == assembled.models[0].blob[7:]
    assert text == bom_json(spec, contents, assembled.models, [image])  # the same bytes again
    with pytest.raises(ValueError, match="not valid CycloneDX"):
        validate(text.replace('"machine-learning-model"', '"ml-thing"'))


def test_verify_names_a_cosign_public_key_and_only_on_registry_content(tmp_path: Path) -> None:
    key = CosignKey.generate(tmp_path / "vendor")
    spec = write_spec(tmp_path, name="site", models=[], images=[
        {"ref": "reg.example/app:1", "verify": {"key": str(key.pub)}}])
    assert load_spec(spec).images[0].verify is not None
    not_a_key = tmp_path / "release.pub"
    not_a_key.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    spec = write_spec(tmp_path, name="site", models=[], images=[
        {"ref": "reg.example/app:1", "verify": {"key": str(not_a_key)}}])
    with pytest.raises(SpecError, match=r"images\[0\]\.verify\.key.*not a PEM public key"):
        load_spec(spec)
    modelkit.make(tmp_path / "m", 2.0)
    doc = spec_doc(tmp_path / "m")
    doc["models"][0]["verify"] = {"key": str(key.pub)}
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match="only a registry model"):
        load_spec(tmp_path / "local.yaml")


def test_require_signatures_refuses_a_local_model_file(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, extra={"policy": {"require_signatures": True}}))
    with pytest.raises(UpstreamSignatureError, match="local model file carries no upstream"):
        assemble(spec)
