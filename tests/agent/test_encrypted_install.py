"""Encrypted releases on a device (issue 30), from local models: the device's own key
(made at init, or at the first start of a device initialised before), a delta against its
inventory, split parts, the same stick twice, and a clear install from the same spec.

Registry images, skopeo and the refused third device are in
tests/registry/test_encrypted.py."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support.cli import run_agent, run_airlock
from tests.support.keyset import Keys
from tests.support.spec import write_spec


def _init(root: Path, keyset: Keys, name: str = "cam-1") -> Path:
    r = run_agent("--root", root, "init", "--trust", keyset.trust, "--device-id", name)
    assert r.returncode == 0, r.stderr
    return root


def _inventory(root: Path, out: Path) -> Path:
    r = run_agent("--root", root, "inventory", "-o", out)
    assert r.returncode == 0, r.stderr
    return out


def _build(spec: Path, out: Path, keyset: Keys, *extra: object) -> Path:
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out, "--no-check",
                    "--json", *extra)
    assert r.returncode == 0, r.stderr
    return out


def _next(spec: Path, sequence: int) -> Path:
    """The same spec (same model files) at a later sequence."""
    doc = yaml.safe_load(spec.read_text())
    doc["sequence"], doc["version"] = sequence, f"{sequence}.0"
    out = spec.with_name(f"next-{sequence}.yaml")
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def test_a_device_initialised_before_gets_its_key_on_first_start(
        keyset: Keys, tmp_path: Path) -> None:
    root = _init(tmp_path / "old", keyset)
    for name in ("device-encryption.key", "device-encryption.pub"):
        (root / name).unlink()  # as a device initialised before encryption existed
    assert not (root / "device-encryption.key").exists()
    r = run_agent("--root", root, "gc")
    assert r.returncode == 0, r.stderr
    assert (root / "device-encryption.key").stat().st_mode & 0o077 == 0
    spec = write_spec(tmp_path)
    bundle = _build(spec, tmp_path / "b.airlock", keyset, "--encrypt-to",
                    _inventory(root, tmp_path / "inv.json"))
    r = run_agent("--root", root, "install", bundle)
    assert r.returncode == 0, r.stderr


def test_delta_parts_and_the_same_stick_twice_of_an_encrypted_release(
        keyset: Keys, tmp_path: Path) -> None:
    root = _init(tmp_path / "dev", keyset)
    inv1 = _inventory(root, tmp_path / "inv1.json")
    spec = write_spec(tmp_path, pad_mb=1)
    full = _build(spec, tmp_path / "v1.airlock", keyset, "--encrypt-to", inv1)
    r = run_agent("--root", root, "install", full, "--json")
    assert r.returncode == 0, r.stderr
    # The same stick twice: every store copy checked against the decrypted plaintext.
    r = run_agent("--root", root, "install", full, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["repaired"] == []
    # A delta against the device's inventory leaves the model out though it is encrypted
    # afresh (new key, new ciphertext digest): the device holds its plaintext.
    inv2 = _inventory(root, tmp_path / "inv2.json")
    r = run_airlock("diff", inv2, full, "--json")  # by plaintext: the device holds it all
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["delta"]["blobs_shipped"] == 0
    delta = _build(_next(spec, 2), tmp_path / "v2.airlock", keyset, "--encrypt-to", inv2,
                   "--delta-from", inv2)
    assert delta.stat().st_size < full.stat().st_size // 4
    r = run_agent("--root", root, "install", delta, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["active"] == "vision-2"
    # Split parts of an encrypted bundle install straight from part 1.
    parts = _build(_next(spec, 3), tmp_path / "v3.airlock", keyset, "--encrypt-to", inv2,
                   "--max-size", "256KiB")
    assert not parts.exists()
    r = run_agent("--root", root, "install", tmp_path / "v3.airlock.part001", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["active"] == "vision-3"
    r = run_agent("--root", root, "fsck", "--json")
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_signing_key_is_no_recipient(keyset: Keys, tmp_path: Path) -> None:
    """The device's Ed25519 device.pub is not what ocicrypt wraps to: exit 2, nothing written."""
    root = _init(tmp_path / "dev", keyset)
    spec = write_spec(tmp_path)
    out = tmp_path / "b.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out, "--no-check",
                    "--encrypt-to", root / "device.pub")
    assert r.returncode == 2
    assert "neither a PEM public key (EC or RSA) nor a device's signed inventory" in r.stderr
    assert not out.exists()
