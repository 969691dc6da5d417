"""Side files and self-declared ids are not instructions to the signer.

Issue 24, class 5, through the real ``airlock sign``:

* a ``.NAME.sign-intent`` planted beside a bundle, holding other metadata,
  is refused before anything is signed (exit 2), ``--yes`` or not: a record
  this tool wrote only ever adds signatures to the metadata in the slot
  (``bundler.signing.slot_rewrite``);
* a detached signature relabelled with the release key's id (made by another
  key) is refused by ``sign --merge`` (exit 3) and never replaces the real
  signature: key ids are computed from key material (``keys.keyfile``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from airlock.format.bundle import BundleReader
from airlock.format.slot import metadata_slot
from bundler.signing.slot_rewrite import intent_path
from keys.signatures import Signable
from tests.support.cli import run_airlock
from tests.support.kit import Kit


def _bundle(kit: Kit, tmp_path: Path) -> Path:
    bundle = tmp_path / "vision-1.airlock"
    bundle.write_bytes(kit.good)
    return bundle


def test_a_planted_sign_intent_is_refused_not_signed(kit: Kit, keyset: Any,
                                                     tmp_path: Path) -> None:
    bundle = _bundle(kit, tmp_path)
    with bundle.open("rb") as f:
        head = BundleReader(f).head()
    # Another release's metadata (say, one carrying a root hook), in a record as whole and
    # self-consistent as a real one: offset, size, inode and digest all right.
    slot = metadata_slot(kit.other_release_json, head.slot_size)
    header = {"offset": head.slot_offset, "size": len(slot), "inode": os.stat(bundle).st_ino,
              "sha256": hashlib.sha256(slot).hexdigest()}
    intent_path(bundle).write_bytes(json.dumps(header, sort_keys=True).encode() + b"\n" + slot)
    before = bundle.read_bytes()

    r = run_airlock("sign", bundle, "--key", keyset.release_key, "--yes")
    assert r.returncode == 2, r.stderr
    assert ".vision-1.airlock.sign-intent would change what vision-1.airlock signs" in r.stderr
    assert bundle.read_bytes() == before
    r = run_airlock("verify", bundle, "--trust", keyset.trust, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["sequence"] != json.loads(
        kit.other_release_json)["signed"]["version"], r.stdout


def test_a_relabelled_detached_signature_is_refused(kit: Kit, keyset: Any,
                                                    tmp_path: Path) -> None:
    bundle = _bundle(kit, tmp_path)
    doc = Signable.from_bytes(kit.release_json, "release")
    rogue = kit.rogue.public_key
    detached = json.loads(doc.detach(doc.sign(kit.rogue), rogue))
    real = kit.release.public_key.keyid
    detached["key"]["keyid"] = detached["signature"]["keyid"] = real  # "I am the release key"
    sig = tmp_path / "release.sig.json"
    sig.write_text(json.dumps(detached))
    before = bundle.read_bytes()

    r = run_airlock("sign", "--merge", sig, bundle, "--trust", keyset.trust, "--yes")
    assert r.returncode == 3, r.stderr
    assert "relabelled" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert bundle.read_bytes() == before
    r = run_airlock("verify", bundle, "--trust", keyset.trust, "--json")
    assert r.returncode == 0 and real in json.loads(r.stdout)["signers"], r.stdout
