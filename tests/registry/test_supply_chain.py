"""Upstream cosign signatures checked at build, carried as referrers, and an SBOM inside.

Signatures are real cosign-format signatures (tests/support/cosign.py, made with
``cryptography``) pushed to Debian's docker-registry, which has no referrers
API: the tag schema (``sha256-<hex>.sig``) is what is found.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airlock.errors import UpstreamSignatureError
from bundler.build.assemble import assemble
from bundler.build.sbom import validate
from bundler.build.spec import load_spec
from scripts import modelkit, ocikit
from tests.support.cli import run_airlock
from tests.support.cosign import CosignKey, attest, digest_of_tag, sign
from tests.support.keyset import Keys
from tests.support.registry import run_build
from tests.support.spec import write_spec

pytestmark = pytest.mark.integration


@dataclass
class Signed:
    host: str
    vendor: CosignKey
    ml: CosignKey
    stranger: CosignKey
    model_dir: Path

    def ref(self, name: str) -> str:
        return f"{self.host}/sc/{name}:1.0"


@pytest.fixture(scope="module")
def signed(registry: ocikit.Registry, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    work = tmp_path_factory.mktemp("signed")
    host = registry.host
    keys = Signed(host, CosignKey.generate(work / "vendor"), CosignKey.generate(work / "ml"),
                  CosignKey.generate(work / "stranger"), work / "model")
    images = {"app": [ocikit.debian_layer(), ocikit.random_layer(32 * 1024, 11, "app/bin")],
              "app2": [_updated_debian_layer(), ocikit.random_layer(32 * 1024, 11, "app/bin")]}
    for seed, name in enumerate(("worker", "unsigned", "other", "tampered", "stranger",
                                 "moving"), start=20):
        images[name] = [ocikit.random_layer(16 * 1024, seed, f"{name}/bin")]
    for name, layers in images.items():
        ocikit.push(ocikit.write_image(work / name, "1.0", layers), "1.0", keys.ref(name))
    modelkit.make(keys.model_dir, 2.0)
    ocikit.push_model(host, "sc/detector:1.0", [keys.model_dir / f for f in
                                                ("model.onnx", "inputs.npz", "outputs.npz")])

    def digest(name: str) -> str:
        return digest_of_tag(host, f"sc/{name}:1.0")

    for name in ("app", "app2", "worker", "moving"):
        sign(host, f"sc/{name}", digest(name), keys.vendor)
    sign(host, "sc/detector", digest("detector"), keys.ml)
    attest(host, "sc/app", digest("app"), keys.vendor, {"bomFormat": "CycloneDX"})
    sign(host, "sc/stranger", digest("stranger"), keys.stranger)
    sign(host, "sc/other", digest("other"), keys.vendor, over=digest("app"))
    sign(host, "sc/tampered", digest("tampered"), keys.vendor, tamper=True)
    return keys


def _updated_debian_layer() -> ocikit.Layer:
    """The Debian layer a point release later: libc6 updated, zlib1g gone, curl added."""
    status = ocikit.DPKG_STATUS.replace("2.36-9+deb12u4", "2.36-9+deb12u7")
    status = status.replace("Package: zlib1g", "Package: curl").replace(
        "1:1.2.13.dfsg-1", "7.88.1-10+deb12u8")
    return ocikit.files_layer({"var/lib/dpkg/status": status.encode()})


def _spec(d: Path, s: Signed, *extra_images: dict[str, Any], policy: dict[str, Any] | None = None,
          app: str = "app") -> Path:
    vendor = {"key": str(s.vendor.pub)}
    return write_spec(
        d, name="site",
        models=[{"name": "detector", "ref": f"oci://{s.ref('detector')}",
                 "health": {"inputs": "inputs.npz", "outputs": "outputs.npz"},
                 "verify": {"key": str(s.ml.pub)}}],
        images=[{"ref": s.ref(app), "verify": vendor}, {"ref": s.ref("worker"), "verify": vendor},
                *extra_images],
        extra={"policy": policy if policy is not None
               else {"require_signatures": True, "sbom": True, "provenance": True,
                     "enforce_on_device": True}})


def _members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def built(signed: Signed, keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("built")
    out = d / "site.airlock"
    r = run_build(signed.host, keyset, _spec(d, signed), out, d / "cache", "--no-check")
    assert r.returncode == 0, r.stderr
    return out


def test_signed_images_and_model_build_and_inspect_lists_the_evidence(
        built: Path, signed: Signed) -> None:
    r = run_airlock("inspect", built)
    assert r.returncode == 0, r.stderr
    for name in ("app", "worker"):
        digest = digest_of_tag(signed.host, f"sc/{name}:1.0")
        assert (f"evidence  signature {digest.replace(':', '-')}.sig -> image "
                f"{signed.ref(name)} (linux/amd64), verified with key") in r.stdout
    assert "-> model detector, verified with key" in r.stdout
    app = digest_of_tag(signed.host, "sc/app:1.0").replace(":", "-")
    assert f"evidence  attestation {app}.att -> image {signed.ref('app')} (linux/amd64)\n" \
        in r.stdout
    assert "evidence  sbom" in r.stdout and "-> the release" in r.stdout
    assert "PROBLEM" not in r.stdout
    info = json.loads(run_airlock("inspect", built, "--json").stdout)["supply_chain"]
    assert info["require_signatures"] is True and info["problems"] == []
    assert {v["ref"] for v in info["verified"]} == {
        signed.ref("app"), signed.ref("worker"), signed.ref("detector")}


def test_signatures_sit_in_the_layout_as_referrers_and_skopeo_still_reads_the_images(
        built: Path, signed: Signed) -> None:
    members = _members(built)
    index = json.loads(members["index.json"])
    names = {m.get("annotations", {}).get("org.opencontainers.image.ref.name"): m
             for m in index["manifests"]}
    digest = digest_of_tag(signed.host, "sc/app:1.0")
    sig = names[f"{digest.replace(':', '-')}.sig"]   # cosign's tag name
    listing = names[digest.replace(":", "-")]       # the OCI 1.1 referrers tag schema
    referrers = json.loads(members[f"blobs/sha256/{listing['digest'][7:]}"])
    att = names[f"{digest.replace(':', '-')}.att"]
    assert sorted(m["digest"] for m in referrers["manifests"]) == sorted(
        [sig["digest"], att["digest"]])                 # the signature and the attestation
    signature = json.loads(members[f"blobs/sha256/{sig['digest'][7:]}"])
    assert signature["layers"][0]["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    r = ocikit.skopeo("inspect", f"oci-archive:{built}:{signed.ref('app')}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Digest"] == digest


def test_inspect_sbom_is_valid_cyclonedx_with_debian_packages_and_the_model_card(
        built: Path, tmp_path: Path) -> None:
    r = run_airlock("inspect", built, "--sbom")
    assert r.returncode == 0, r.stderr
    validate(r.stdout)
    bom = json.loads(r.stdout)
    assert bom["specVersion"] == "1.6"
    by_type = {c["type"]: c for c in bom["components"]}
    packages = {p["name"]: p for c in bom["components"] if c["type"] == "container"
                for p in c.get("components", [])}
    assert packages["libc6"]["purl"].startswith("pkg:deb/debian/libc6@2.36-9%2Bdeb12u4")
    assert {"base-files", "libc6", "zlib1g"} <= set(packages) and "nano" not in packages
    card = by_type["machine-learning-model"]["modelCard"]
    props = {p["name"]: p["value"] for p in card["properties"]}
    assert props["airlock:format"] == "onnx" and "airlock:opset.ai.onnx" in props
    assert card["modelParameters"]["inputs"]
    out = tmp_path / "site.cdx.json"
    r = run_airlock("inspect", built, "--sbom", "-o", out)
    assert r.returncode == 0 and json.loads(out.read_text()) == bom


def test_inspect_provenance_is_an_in_toto_slsa_statement_signed_by_the_release_key(
        built: Path, signed: Signed, keyset: Keys) -> None:
    from securesystemslib.dsse import Envelope

    from keys.keyfile import load_public_key

    r = run_airlock("inspect", built, "--provenance")
    assert r.returncode == 0, r.stderr
    envelope = Envelope.from_dict(json.loads(r.stdout))
    envelope.verify([load_public_key(keyset.release_pub)], 1)  # raises unless signed by it
    assert envelope.payload_type == "application/vnd.in-toto+json" and envelope.signatures
    stmt = json.loads(envelope.payload)
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v1"
    deps = {d["uri"]: d for d in stmt["predicate"]["buildDefinition"]["resolvedDependencies"]}
    app = digest_of_tag(signed.host, "sc/app:1.0")
    assert deps[signed.ref("app")]["digest"] == {"sha256": app[7:]}
    assert "upstream_signature_key" in deps[signed.ref("app")]["annotations"]
    names = {s["name"] for s in stmt["subject"]}
    assert "sbom.cdx.json" in names and "model:detector/model.onnx" in names


def test_verify_rechecks_the_carried_signatures_offline(built: Path, keyset: Keys,
                                                        signed: Signed) -> None:
    from airlock.format.bundle import BundleReader
    from bundler.examine.evidence import keep_evidence, recheck, wanted_paths
    from keys.release import Release
    from keys.supply_chain import SupplyChain

    r = run_airlock("verify", built, "--trust", keyset.trust)
    assert r.returncode == 0, r.stderr
    with built.open("rb") as f:     # the carried bytes, checked against other recorded keys
        reader = BundleReader(f)
        release = Release.from_bytes(reader.head().release_json)
        kept: dict[str, bytes] = {}
        wanted = wanted_paths(release)
        for member in reader.files(release.files):
            keep_evidence(member, kept, wanted)
    assert recheck(release, kept) == []
    sc = release.supply_chain
    assert sc is not None
    from bundler.build.upstream_policy import key_text
    release.supply_chain = SupplyChain(True, {k: key_text(signed.stranger.pub.read_bytes())
                                              for k in sc.keys}, sc.verified, sc.evidence)
    problems = recheck(release, kept)
    assert len(problems) == 3  # two images and the model, each named
    assert all("does not verify with the key" in p for p in problems)
    release.supply_chain = SupplyChain(True, sc.keys, sc.verified[1:], sc.evidence)
    assert any("no verified upstream signature" in p for p in recheck(release, kept))


def test_verify_exits_3_when_a_carried_signature_fails_the_recorded_key(
        signed: Signed, keyset: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A release (validly signed) recording another upstream key than the one that signed."""
    import bundler.build.pull as pull
    from bundler.build.assemble import build_bundle
    from keys.keyfile import load_signer

    real = pull.key_text
    monkeypatch.setattr(pull, "key_text", lambda pem: real(signed.stranger.pub.read_bytes()))
    out = tmp_path / "lying.airlock"
    build_bundle(load_spec(_spec(tmp_path, signed)), [load_signer(keyset.release_key)], out,
                 registry_options={"insecure": [signed.host], "cache": tmp_path / "cache"},
                 check=False)
    r = run_airlock("verify", out, "--trust", keyset.trust)
    assert r.returncode == 3, r.stderr
    assert signed.ref("app") in r.stderr and "does not verify with the key" in r.stderr
    # policy.enforce_on_device: the device checks the same at install, and refuses.
    from tests.support.cli import run_agent

    root = tmp_path / "root"
    assert run_agent("--root", root, "init", "--trust", keyset.trust,
                     "--device-id", "cam-1").returncode == 0
    r = run_agent("--root", root, "install", out)
    assert r.returncode == 3, r.stderr
    assert signed.ref("app") in r.stderr and "nothing installed" in r.stderr
    status = json.loads(run_agent("--root", root, "status", "--json").stdout)
    assert "site-1" not in json.dumps(status["active"])
    assert not (root / "releases" / "site-1").exists()


def test_a_device_installs_a_bundle_that_carries_evidence_and_checks_it(built: Path, signed: Signed,
                                                          keyset: Keys, tmp_path: Path) -> None:
    from tests.support.cli import run_agent

    root = tmp_path / "root"
    r = run_agent("--root", root, "init", "--trust", keyset.trust, "--device-id", "cam-1")
    assert r.returncode == 0, r.stderr
    r = run_agent("--root", root, "install", built)
    assert r.returncode == 0, r.stderr
    app = json.loads(ocikit.skopeo("inspect", f"oci:{root / 'images'}:{signed.ref('app')}").stdout)
    assert app["Digest"] == digest_of_tag(signed.host, "sc/app:1.0")


def test_an_encrypted_bundle_keeps_its_evidence_clear_and_its_device_checks_it(
        signed: Signed, keyset: Keys, tmp_path: Path) -> None:
    """--encrypt-to with the supply chain: the SBOM reads clear layers, signatures stay clear."""
    from tests.support.cli import run_agent

    root = tmp_path / "cam-1"
    assert run_agent("--root", root, "init", "--trust", keyset.trust,
                     "--device-id", "cam-1").returncode == 0
    assert run_agent("--root", root, "inventory", "-o", tmp_path / "cam-1.json").returncode == 0
    out = tmp_path / "sealed.airlock"
    r = run_build(signed.host, keyset, _spec(tmp_path, signed), out, tmp_path / "cache",
                  "--no-check", "--encrypt-to", tmp_path / "cam-1.json")
    assert r.returncode == 0, r.stderr
    assert run_airlock("verify", out, "--trust", keyset.trust).returncode == 0
    bom = json.loads(run_airlock("inspect", out, "--sbom").stdout)
    assert "libc6" in {p["name"] for c in bom["components"] for p in c.get("components", [])}
    r = run_agent("--root", root, "install", out)
    assert r.returncode == 0, r.stderr


def test_diff_shows_packages_added_removed_and_changed(
        built: Path, signed: Signed, keyset: Keys, tmp_path: Path) -> None:
    out = tmp_path / "site2.airlock"
    r = run_build(signed.host, keyset, _spec(tmp_path, signed, app="app2"), out,
                  tmp_path / "cache", "--no-check")
    assert r.returncode == 0, r.stderr
    r = run_airlock("diff", built, out)
    assert r.returncode == 0, r.stderr
    assert "  + deb:curl 7.88.1-10+deb12u8" in r.stdout
    assert "  - deb:zlib1g 1:1.2.13.dfsg-1" in r.stdout
    assert "  ~ deb:libc6 2.36-9+deb12u4 -> 2.36-9+deb12u7" in r.stdout
    changes = json.loads(run_airlock("diff", built, out, "--json").stdout)["packages"]
    assert changes["added"] == [{"package": "deb:curl", "version": "7.88.1-10+deb12u8"}]


@pytest.mark.parametrize(("image", "reason"), [
    ("stranger", "does not verify with the key"),
    ("unsigned", "not signed"),
    ("other", "the signature covers"),
    ("tampered", "does not verify with the key"),
])
def test_a_bad_upstream_signature_exits_3_naming_it_and_writes_nothing(
        signed: Signed, keyset: Keys, tmp_path: Path, image: str, reason: str) -> None:
    out = tmp_path / "site.airlock"
    r = run_build(signed.host, keyset, _spec(tmp_path, signed, app=image), out,
                  tmp_path / "cache", "--no-check")
    assert r.returncode == 3, r.stderr
    assert signed.ref(image) in r.stderr and reason in r.stderr
    assert not out.exists() and not list(tmp_path.glob("*.airlock*"))


def test_require_signatures_refuses_an_image_without_verify(
        signed: Signed, keyset: Keys, tmp_path: Path) -> None:
    out = tmp_path / "site.airlock"
    spec = _spec(tmp_path, signed, {"ref": signed.ref("unsigned")})
    r = run_build(signed.host, keyset, spec, out, tmp_path / "cache", "--no-check")
    assert r.returncode == 3 and "require_signatures" in r.stderr
    assert signed.ref("unsigned") in r.stderr and not out.exists()


def test_a_tag_moved_between_verify_and_pull_is_refused(
        signed: Signed, tmp_path: Path, registry: ocikit.Registry) -> None:
    spec = load_spec(_spec(tmp_path, signed, app="moving"))

    def progress(phase: str, done: int, total: int | None) -> None:
        if phase == f"verified {signed.ref('moving')}":   # re-pushed right after its check
            layout = ocikit.write_image(tmp_path / "evil", "1.0",
                                        [ocikit.random_layer(1024, 99, "evil/bin")])
            ocikit.push(layout, "1.0", signed.ref("moving"))

    with pytest.raises(UpstreamSignatureError, match="the tag moved during the build"):
        assemble(spec, registry_options={"insecure": [signed.host],
                                         "cache": tmp_path / "cache"}, progress=progress)


def test_a_plain_spec_carries_no_supply_chain_section(signed: Signed, keyset: Keys,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "plain.airlock"
    spec = write_spec(tmp_path, name="site", models=[], images=[signed.ref("worker")])
    r = run_build(signed.host, keyset, spec, out, tmp_path / "cache", "--no-check")
    assert r.returncode == 0, r.stderr
    release = json.loads(_members(out)["airlock/release.json"])["signed"]["airlock"]
    assert "supply_chain" not in release
