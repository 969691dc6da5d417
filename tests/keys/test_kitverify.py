"""The standard-library kit verifier (keys/kitverify.py) against the real thing.

Its Ed25519 is checked against ``cryptography`` on random keys and messages
and on tampered signatures; its canonical JSON against securesystemslib's; its
verdicts on ``kit.json`` against python-tuf's (keys/kit.py): both sides must
accept and refuse the same documents, since a device uses one before it has
the other.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from airlock import limits
from airlock.errors import AirlockError
from airlock.format.layout_check import FileInfo
from keys import kitverify
from keys.keyfile import load_signer
from keys.kit import kit_metadata, verify_kit
from keys.metadata import ReleaseSerializer
from keys.trust import TrustRoot
from tests.support.keyset import Keys


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def test_ed25519_agrees_with_cryptography() -> None:
    for n in range(40):
        key = Ed25519PrivateKey.generate()
        msg = os.urandom(n * 13)
        sig = key.sign(msg)
        assert kitverify.ed25519_verify(_raw(key), msg, sig)
        flipped = bytearray(sig)
        flipped[n % 64] ^= 1 << (n % 8)
        assert not kitverify.ed25519_verify(_raw(key), msg, bytes(flipped))
        assert not kitverify.ed25519_verify(_raw(key), msg + b"!", sig)
        other = Ed25519PrivateKey.generate()
        assert not kitverify.ed25519_verify(_raw(other), msg, sig)


def test_ed25519_refuses_malformed_input() -> None:
    key = Ed25519PrivateKey.generate()
    sig = key.sign(b"m")
    assert not kitverify.ed25519_verify(_raw(key)[:31], b"m", sig)
    assert not kitverify.ed25519_verify(_raw(key), b"m", sig[:63])
    # S >= L (a malleated signature) is refused, as RFC 8032 and OpenSSL do.
    s = int.from_bytes(sig[32:], "little") + kitverify._L
    assert not kitverify.ed25519_verify(_raw(key), b"m", sig[:32] + s.to_bytes(32, "little"))
    # A public key that is no curve point.
    assert not kitverify.ed25519_verify(b"\xff" * 32, b"m", sig)


def test_canonical_json_is_tufs(keyset: Keys) -> None:
    from securesystemslib.formats import encode_canonical

    signed = json.loads(keyset.trust.read_bytes())["signed"]
    signed["note"] = 'a "quoted" \\ value, ünïcode'
    assert kitverify.canonical_form(signed) == encode_canonical(signed).encode()


def test_the_bounds_mirror_airlock_limits() -> None:
    assert kitverify.MAX_KIT_METADATA_BYTES == limits.MAX_KIT_METADATA_BYTES
    assert kitverify.MAX_KIT_FILES == limits.MAX_KIT_FILES
    from agent.layout import Layout

    layout = Layout(Path("/r"))
    assert layout.agent_record == Path("/r") / kitverify.AGENT_RECORD


def test_load_root_checks_its_own_signatures(keyset: Keys) -> None:
    root = kitverify.load_root(keyset.trust.read_bytes())
    assert root["_type"] == "root"
    doc = json.loads(keyset.trust.read_bytes())
    doc["signed"]["roles"]["targets"]["threshold"] = 0  # widened after signing
    with pytest.raises(kitverify.KitError, match="valid signature"):
        kitverify.load_root(json.dumps(doc).encode())


def _kit_json(keyset: Keys, *, signer: Path | None = None, expires: timedelta = timedelta(days=9),
              tweak: dict[str, Any] | None = None) -> bytes:
    files = {"wheels/pip-1-py3-none-any.whl": FileInfo(3, hashlib.sha256(b"pip").hexdigest()),
             "requirements.txt": FileInfo(0, hashlib.sha256(b"").hexdigest())}
    md = kit_metadata(version="1.2.0", platform="linux/amd64", python="3.11", glibc="2.28",
                      files=files, requirements="requirements.txt",
                      installer="wheels/pip-1-py3-none-any.whl",
                      expires=datetime.now(timezone.utc).replace(microsecond=0) + expires)
    if tweak:
        md.signed.unrecognized_fields[kitverify.KIT_SECTION].update(tweak)
    md.sign(load_signer(signer or keyset.release_key), signed_serializer=ReleaseSerializer())
    return md.to_bytes()


def _both(keyset: Keys, data: bytes) -> tuple[str | None, str | None]:
    """(stdlib verdict, python-tuf verdict): None for accepted, else the error text."""
    root = kitverify.load_root(keyset.trust.read_bytes())
    try:
        kitverify.verify_kit_json(data, root)
        std = None
    except kitverify.KitError as e:
        std = str(e)
    try:
        verify_kit(TrustRoot.from_bytes(keyset.trust.read_bytes()), data)
        tuf = None
    except AirlockError as e:
        tuf = str(e)
    return std, tuf


def test_both_verifiers_accept_a_good_kit_list(keyset: Keys) -> None:
    data = _kit_json(keyset)
    assert _both(keyset, data) == (None, None)
    kit = kitverify.verify_kit_json(data, kitverify.load_root(keyset.trust.read_bytes()))
    assert (kit.version, kit.platform, kit.python) == ("1.2.0", "linux/amd64", "3.11")
    assert kitverify.kit_id(kit, data) == "1.2.0-" + hashlib.sha256(data).hexdigest()[:12]


def test_both_verifiers_refuse_the_same_bad_lists(keyset: Keys) -> None:
    rogue = keyset.dir / "kit-rogue.key"
    if not rogue.exists():
        from keys.keyfile import generate_keypair

        generate_keypair("kit-rogue", keyset.dir)
    altered = json.loads(_kit_json(keyset))
    altered["signed"]["airlock_kit"]["version"] = "9.0.0"
    bad = {
        "signed by a key the root does not trust": _kit_json(keyset, signer=rogue),
        "signed by the root key, not a release key": _kit_json(keyset, signer=keyset.root_key),
        "edited after signing": json.dumps(altered).encode(),
        "expired": _kit_json(keyset, expires=timedelta(days=-1)),
        "not a final version": _kit_json(keyset, tweak={"version": "1.2.0.dev1"}),
        "unknown platform": _kit_json(keyset, tweak={"platform": "linux/s390x"}),
        "not JSON": b"\xff{",
        "too large": b" " * (limits.MAX_KIT_METADATA_BYTES + 1),
    }
    for why, data in bad.items():
        std, tuf = _both(keyset, data)
        assert std is not None and tuf is not None, (why, std, tuf)


def test_version_order() -> None:
    key = kitverify.version_key
    assert key("1.10.0") > key("1.9.3") > key("1.9") == key("1.9.0") > key("0.99")
    for bad in ("1.0rc1", "v1", "1..0", "", "1.0+local"):
        with pytest.raises(kitverify.KitError):
            key(bad)


def test_check_tree_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "a.whl").write_bytes(b"abc")
    kit = kitverify.KitDocument("1.0", "linux/amd64", "3.11", "2.28",
                                {"wheels/a.whl": (3, hashlib.sha256(b"abc").hexdigest())},
                                "wheels/a.whl", "wheels/a.whl", datetime.now(timezone.utc))
    kitverify.check_tree(tmp_path, kit)
    (tmp_path / "wheels" / "a.whl").write_bytes(b"abd")
    with pytest.raises(kitverify.KitError, match=r"a\.whl.*sha256"):
        kitverify.check_tree(tmp_path, kit)
    (tmp_path / "wheels" / "a.whl").write_bytes(b"abc")
    (tmp_path / "evil.py").write_text("print(1)")
    with pytest.raises(kitverify.KitError, match=r"evil\.py.*not listed"):
        kitverify.check_tree(tmp_path, kit)
    (tmp_path / "evil.py").unlink()
    (tmp_path / "link").symlink_to("wheels/a.whl")
    with pytest.raises(kitverify.KitError, match=r"link.*not a regular file"):
        kitverify.check_tree(tmp_path, kit)


def test_command_line_exit_codes(tmp_path: Path, keyset: Keys) -> None:
    assert kitverify.main([str(tmp_path)]) == 2  # no trust root given
    (tmp_path / "kit.json").write_bytes(_kit_json(keyset, signer=keyset.root_key))
    assert kitverify.main([str(tmp_path), "--trust", str(keyset.trust)]) == 3
