"""Trust decisions: thresholds, wrong keys, expiry, rotation, ring-limited signers."""

from __future__ import annotations

import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from airlock.errors import (
    ExpiredError,
    PolicyError,
    RollbackError,
    SignatureError,
    UsageError,
)
from keys.keyfile import generate_keypair, load_public_key, load_signer
from keys.metadata import ReleaseSerializer
from keys.release import Release
from keys.trust import RingSigner, TrustRoot, create_root, rotate_root


def _keys(d: Path, *names: str) -> dict[str, tuple[Path, Path]]:
    return {n: generate_keypair(n, d) for n in names}


def _release(seq: int = 1, rings: list[str] | None = None, expires_in: float = 3600) -> Release:
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=expires_in)
    return Release(
        name="vision",
        version="1.0",
        sequence=seq,
        expires=when,
        rings=rings or [],
        flags={"threshold": 0.5},
    )


def _signed(release: Release, *keys: Path) -> bytes:
    md = release.to_metadata()
    for k in keys:
        md.sign(load_signer(k), append=True, signed_serializer=ReleaseSerializer())
    return md.to_bytes()


def test_private_key_is_0600_and_passphrase_is_needed(tmp_path: Path) -> None:
    priv, pub = generate_keypair("k", tmp_path, passphrase=b"pw")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"ENCRYPTED" in priv.read_bytes()
    with pytest.raises(UsageError, match="encrypted"):
        load_signer(priv)
    with pytest.raises(UsageError, match="wrong passphrase"):
        load_signer(priv, b"nope")
    assert load_signer(priv, b"pw").public_key.keyid == load_public_key(pub).keyid


def test_release_threshold_met_and_not_met(tmp_path: Path) -> None:
    k = _keys(tmp_path, "root", "a", "b", "c")
    root = TrustRoot(
        create_root(
            [load_signer(k["root"][0])],
            [load_public_key(k[n][1]) for n in "abc"],
            release_threshold=2,
        )
    )
    verified = root.verify_release(_signed(_release(), k["a"][0], k["c"][0]))
    assert verified.role == "release" and len(verified.signers) == 2
    with pytest.raises(SignatureError, match="1 of 2 signatures"):
        root.verify_release(_signed(_release(), k["a"][0]))


def test_wrong_key_and_tampered_metadata_are_rejected(tmp_path: Path) -> None:
    k = _keys(tmp_path, "root", "release", "stranger")
    root = TrustRoot(create_root([load_signer(k["root"][0])], [load_public_key(k["release"][1])]))
    with pytest.raises(SignatureError, match="unknown key"):
        root.verify_release(_signed(_release(), k["stranger"][0]))
    good = _signed(_release(), k["release"][0])
    tampered = good.replace(b'"threshold":0.5', b'"threshold":0.9')
    assert tampered != good
    with pytest.raises(SignatureError):
        root.verify_release(tampered)


def test_expired_release_and_expired_root(tmp_path: Path) -> None:
    k = _keys(tmp_path, "root", "release")
    root = TrustRoot(create_root([load_signer(k["root"][0])], [load_public_key(k["release"][1])]))
    with pytest.raises(ExpiredError, match="expired at"):
        root.verify_release(_signed(_release(expires_in=-10), k["release"][0]))
    later = datetime.now(timezone.utc) + timedelta(days=400)
    with pytest.raises(ExpiredError, match="trust root expired"):
        root.verify_release(_signed(_release(expires_in=500 * 86400), k["release"][0]), now=later)


def test_root_rotation_needs_both_thresholds(tmp_path: Path) -> None:
    k = _keys(tmp_path, "old", "new", "release")
    old_signer, new_signer = load_signer(k["old"][0]), load_signer(k["new"][0])
    root = TrustRoot(create_root([old_signer], [load_public_key(k["release"][1])]))

    v2 = rotate_root(root, [old_signer], [new_signer])
    assert root.rotate(v2.to_bytes()).version == 2

    # Only the new key signed: the old root's threshold is not met.
    only_new = Metadata.from_bytes(v2.to_bytes())
    only_new.signatures.clear()
    only_new.sign(new_signer)
    with pytest.raises(SignatureError, match="old root"):
        root.rotate(only_new.to_bytes())
    # Only the old key signed: the new root's own threshold is not met.
    only_old = Metadata.from_bytes(v2.to_bytes())
    only_old.signatures.clear()
    only_old.sign(old_signer)
    with pytest.raises(SignatureError, match="its own keys"):
        root.rotate(only_old.to_bytes())
    # Older roots and skipped versions are refused.
    rotated = root.rotate(v2.to_bytes())
    with pytest.raises(RollbackError):
        rotated.rotate(root.to_bytes())


def test_ring_signer_may_deploy_only_to_its_rings(tmp_path: Path) -> None:
    k = _keys(tmp_path, "root", "release", "canary")
    root = TrustRoot(
        create_root(
            [load_signer(k["root"][0])],
            [load_public_key(k["release"][1])],
            ring_signers=[
                RingSigner("canary-team", (load_public_key(k["canary"][1]),), ("canary",))
            ],
        )
    )
    ok = root.verify_release(_signed(_release(rings=["canary"]), k["canary"][0]), ring="canary")
    assert ok.role == "canary-team" and ok.rings == ("canary",)
    with pytest.raises(PolicyError, match="may deploy only to rings canary"):
        root.verify_release(_signed(_release(rings=["canary", "prod"]), k["canary"][0]))
    with pytest.raises(PolicyError, match="all rings"):
        root.verify_release(_signed(_release(), k["canary"][0]))
    # The release role may target any ring, but a device outside the release's rings refuses.
    with pytest.raises(PolicyError, match="this device is in ring 'prod'"):
        root.verify_release(_signed(_release(rings=["canary"]), k["release"][0]), ring="prod")
