"""A ring-limited signer deploys only to devices in its rings, and never to a ringless device.

Issue 13, class 2: ring checks were skipped on a device initialised without
``--ring``, so a canary-only signer could deploy fleet-wide. The policy
(keys/trust.py): a ring signer's release names rings within the signer's; a
device in ring R takes a release naming R or no ring; a device in no ring
takes only a release naming no ring, which only the release role may sign.

The kit's trust root has a 2-of-2 ``canary`` ring signer; the bundles are the
kit's good release re-signed by both canary keys or by the release key::

    airlock verify canary.airlock --trust trust.json --ring prod     # exit 3
    airlock-agent --root ROOT install canary.airlock                 # exit 3 on a ringless device
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.journal import Journal
from airlock.errors import PolicyError
from keys.trust import TrustRoot
from tests.support.cli import run_agent, run_airlock
from tests.support.kit import GOOD_SEQUENCE, Kit
from tests.support.tarsurgery import bundle, sign_dict
from tests.support.treehash import listing

NO_RING = "in no ring"


def _release(kit: Kit, rings: list[str], *, canary: bool) -> bytes:
    """The good release's metadata naming ``rings``, signed by the canary signer or the release key."""
    signed = kit.signed()
    signed["airlock"]["rings"] = rings
    return sign_dict(signed, list(kit.canary) if canary else [kit.release])


def _write(kit: Kit, path: Path, release_json: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bundle(release_json, kit.files))
    return path


# -- the policy, decided in keys/trust.py ----------------------------------------------------


@pytest.mark.parametrize(
    ("signer", "rings", "device", "refusal"),
    [
        ("canary", ["canary"], "canary", None),
        ("canary", ["canary"], "prod", "this device is in ring 'prod'"),
        ("canary", ["canary"], None, "may deploy only to rings canary; this device is in no ring"),
        ("canary", [], "canary", "targets all rings"),
        ("release", ["canary"], "canary", None),
        ("release", ["canary"], None, "release targets rings canary; this device is in no ring"),
        ("release", [], None, None),
        ("release", [], "prod", None),
    ],
)
def test_ring_policy(kit: Kit, signer: str, rings: list[str], device: str | None,
                     refusal: str | None) -> None:
    trust = TrustRoot.from_bytes(kit.trust_path.read_bytes())
    data = _release(kit, rings, canary=signer == "canary")
    if refusal is None:
        verified = trust.verify_release(data, ring=device)
        assert verified.role == ("canary" if signer == "canary" else "release")
    else:
        with pytest.raises(PolicyError, match=refusal):
            trust.verify_release(data, ring=device)


def test_host_check_for_any_ring_still_holds_the_signer_to_its_rings(kit: Kit) -> None:
    trust = TrustRoot.from_bytes(kit.trust_path.read_bytes())
    ok = trust.verify_release(_release(kit, ["canary"], canary=True), any_ring=True)
    assert ok.role == "canary" and ok.rings == ("canary",)
    with pytest.raises(PolicyError, match="may deploy only to rings canary"):
        trust.verify_release(_release(kit, ["canary", "prod"], canary=True), any_ring=True)


# -- the host: airlock verify ------------------------------------------------------------------


def test_verify_ring_signer_bundle_per_ring(kit: Kit, tmp_path: Path) -> None:
    canary = _write(kit, tmp_path / "canary.airlock", _release(kit, ["canary"], canary=True))

    ok = run_airlock("verify", canary, "--trust", kit.trust_path, "--ring", "canary", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["role"] == "canary"

    other = run_airlock("verify", canary, "--trust", kit.trust_path, "--ring", "prod")
    assert other.returncode == 3
    assert other.stderr.strip().splitlines() == [
        "airlock: error: release targets rings canary; this device is in ring 'prod'"]

    # Without --ring the host checks the bundle for the rings it names.
    named = run_airlock("verify", canary, "--trust", kit.trust_path, "--json")
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["rings"] == ["canary"]


# -- the device: airlock-agent install ----------------------------------------------------------


def _device(kit: Kit, root: Path, ring: str | None) -> Path:
    args: list[Any] = ["--root", root, "init", "--trust", kit.trust_path, "--device-id", "cam"]
    r = run_agent(*args, *(["--ring", ring] if ring else []))
    assert r.returncode == 0, r.stderr
    return root


def _refused(root: Path, media: Path, error: str) -> None:
    """Install exits 3 with one line holding ``error``; the refusal is journaled; ROOT unchanged."""
    skip = {"journal.jsonl", "staging"}
    journal = Journal(root / "journal.jsonl")
    lines, before = journal.verify(), listing(root, skip=skip)
    r = run_agent("--root", root, "install", media)
    assert r.returncode == 3, r.stderr
    assert r.stderr.strip().splitlines() == [f"airlock-agent: error: {error}"]
    assert listing(root, skip=skip) == before
    assert list((root / "staging").iterdir()) == []
    assert journal.verify() == lines + 1
    last = list(journal.entries())[-1]
    assert last["event"] == "rejected" and error in last["reason"]


def _installed(root: Path, media: Path, role: str) -> None:
    r = run_agent("--root", root, "install", media, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["active"] == f"vision-{GOOD_SEQUENCE}"
    started = [e for e in Journal(root / "journal.jsonl").entries() if e["event"] == "install-started"]
    assert started[-1]["role"] == role


def test_ring_signer_installs_on_its_ring(kit: Kit, tmp_path: Path) -> None:
    media = _write(kit, tmp_path / "media" / "canary.airlock", _release(kit, ["canary"], canary=True))
    _installed(_device(kit, tmp_path / "canary-device", "canary"), media, "canary")


def test_ring_signer_refused_on_another_ring(kit: Kit, tmp_path: Path) -> None:
    media = _write(kit, tmp_path / "media" / "canary.airlock", _release(kit, ["canary"], canary=True))
    root = _device(kit, tmp_path / "prod-device", "prod")
    _refused(root, media, "release targets rings canary; this device is in ring 'prod'")


def test_ringless_device_takes_only_releases_for_every_ring(kit: Kit, tmp_path: Path) -> None:
    root = _device(kit, tmp_path / "ringless-device", None)
    media = tmp_path / "media"
    # The hole: a canary-only signer's release installed on every device without a ring.
    _refused(root, _write(kit, media / "canary.airlock", _release(kit, ["canary"], canary=True)),
             f"signer 'canary' may deploy only to rings canary; this device is {NO_RING}")
    # The release role may target rings, but a device in none of them is not one of them.
    _refused(root, _write(kit, media / "release-canary.airlock",
                          _release(kit, ["canary"], canary=False)),
             f"release targets rings canary; this device is {NO_RING} and takes only "
             "releases for every ring")
    _installed(root, _write(kit, media / "release-all.airlock", _release(kit, [], canary=False)),
               "release")
