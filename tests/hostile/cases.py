"""The hostile-media corpus: bad bundles made by code from one good bundle.

Every case names the threat-model row it exercises (``docs/THREAT_MODEL.md``),
makes its bytes from a :class:`~tests.support.kit.Kit` (a real signed bundle,
the keys that made it and the trust root a device holds), and says how a tool
must refuse it: the exit code and a substring the one-line error must contain::

    kit = Kit.create(workdir, root_key=Path("root.key"), release_key=Path("release.key"))
    for case in CASES:
        path = case.write(kit, workdir / "bad")
        # airlock verify PATH --trust kit.trust_path  -> exit case.exit, stderr has case.error

Run as a module from the repository root to write the whole corpus to a
directory (fresh keys)::

    python -m tests.hostile.cases /tmp/corpus
    ls /tmp/corpus   # one .airlock per case, plus trust.json and cases.json

Tar variants are written header by header (tests/support/tarsurgery.py) so
the Airlock reader, not the tarfile writer, is what has to refuse them.
Variants that attack the trust logic are re-signed with the real release key
(an attacker holding a key), with a rogue key, or with fewer keys than a
role's threshold.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer

from tests.support.kit import ACTIVE_SEQUENCE, Kit
from tests.support.tarsurgery import (
    BLOCK,
    END,
    bundle,
    fix_checksum,
    header_offset,
    member,
    regular,
    set_target,
    sign_dict,
    tarinfo,
)

# Threat-model rows. The ids are the anchors of docs/THREAT_MODEL.md.
THREATS: dict[str, str] = {
    "TUF-arbitrary": "arbitrary software installation",
    "TUF-rollback": "rollback attack",
    "TUF-fastforward": "fast-forward attack",
    "TUF-freeze": "indefinite freeze attack",
    "TUF-endless": "endless data attack",
    "TUF-extraneous": "extraneous dependencies attack",
    "TUF-mixmatch": "mix-and-match attack",
    "TUF-wrong": "wrong software installation",
    "TUF-threshold": "key compromise below the threshold",
    "TAR-traversal": "path traversal and absolute paths",
    "TAR-links": "symbolic and hard links",
    "TAR-special": "device files, fifos, directories",
    "TAR-duplicate": "duplicate and misplaced members",
    "TAR-sparse": "sparse and oversized members",
    "TAR-pax": "pax and GNU header tricks",
    "TAR-corrupt": "corrupt or truncated archive",
    "RES-bomb": "decompression bombs",
    "RES-huge": "huge metadata, manifests and headers",
    "RES-deep": "deeply nested or pathological JSON",
    "RES-disk": "disk exhaustion",
    "TXT-inert": "terminal control sequences, undecodable and oversized text",
    "RES-parse": "unbounded parsing before the signature check",
    "SIGNED-text": "control characters in signed text",
    "SIGNED-values": "signed values outside what a device can use",
    "SIGNED-files": "colliding or escaping file names inside a model directory",
}


def _when(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the cases -------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad bundle and how it must be refused."""

    id: str
    threat: str  # a key of THREATS
    make: Callable[[Kit], bytes]
    error: str  # substring of the one-line error
    exit: int = 3
    ring: str | None = None  # the device's ring (verify --ring)
    device_seen: int | None = None  # highest sequence the device already accepted
    agent_exit: tuple[int, ...] = ()  # when the agent may answer differently (resources)
    agent_error: str | None = None

    def write(self, kit: Kit, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.id}.airlock"
        path.write_bytes(self.make(kit))
        return path


CASES: list[Case] = []


def case(id: str, threat: str, error: str, **kw: Any) -> Callable[[Callable[[Kit], bytes]], Callable[[Kit], bytes]]:
    assert threat in THREATS, threat

    def register(make: Callable[[Kit], bytes]) -> Callable[[Kit], bytes]:
        assert all(c.id != id for c in CASES), id
        CASES.append(Case(id, threat, make, error, **kw))
        return make

    return register


def _resigned(kit: Kit, mutate: Callable[[dict[str, Any]], None],
              signers: Sequence[Signer] | None = None,
              files: Sequence[tuple[str, bytes]] | None = None) -> bytes:
    s = kit.signed()
    mutate(s)
    return bundle(sign_dict(s, signers or [kit.release]), kit.files if files is None else files)


def _swap_file(kit: Kit, path: str, data: bytes | None) -> list[tuple[str, bytes]]:
    out = [(p, data if p == path else d) for p, d in kit.files]
    return [(p, d) for p, d in out if d is not None]


# TUF: arbitrary installation ----------------------------------------------------


@case("arbitrary-rogue-key", "TUF-arbitrary", "signed by unknown key")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(version="evil"), [kit.rogue])


@case("arbitrary-unsigned", "TUF-arbitrary", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    d = json.loads(kit.release_json)
    d["signatures"] = []
    return bundle(json.dumps(d).encode(), kit.files)


@case("arbitrary-bad-signature", "TUF-arbitrary", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    d = json.loads(kit.release_json)
    sig = d["signatures"][0]["sig"]
    d["signatures"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    return bundle(json.dumps(d).encode(), kit.files)


@case("arbitrary-edited-after-signing", "TUF-arbitrary", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    d = json.loads(kit.release_json)
    d["signed"]["airlock"]["flags"] = {"backdoor": True}
    return bundle(json.dumps(d).encode(), kit.files)


@case("arbitrary-forged-keyid", "TUF-arbitrary", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    # The rogue key signs but claims to be the release key.
    s = kit.signed()
    s["airlock"]["version"] = "evil"
    d = json.loads(sign_dict(s, [kit.rogue]))
    d["signatures"][0]["keyid"] = kit.release.public_key.keyid
    return bundle(json.dumps(d).encode(), kit.files)


@case("arbitrary-root-key-signs-release", "TUF-arbitrary", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: None, [kit.root])


@case("arbitrary-model-swapped", "TUF-arbitrary", "sha256 is")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    evil = bytes(b ^ 0xFF for b in data)  # same length, other bytes
    return bundle(kit.release_json, _swap_file(kit, path, evil))


@case("arbitrary-root-json-as-release", "TUF-arbitrary", "not of type 'targets'")
def _(kit: Kit) -> bytes:
    return bundle(kit.trust_path.read_bytes(), kit.files)


@case("arbitrary-rotated-root-rogue", "TUF-arbitrary", "old root's keys")
def _(kit: Kit) -> bytes:
    # A "rotation" to a root the attacker controls, signed only by the attacker.
    s = kit.trust_signed()
    s["version"] = 2
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.rogue_root], release_form=False))


@case("arbitrary-rotated-root-malformed-ring-signers", "TUF-arbitrary", "malformed ring signers")
def _(kit: Kit) -> bytes:
    # Not even signed: parsing it crashed the reader with AttributeError (exit 1).
    s = kit.trust_signed()
    s["version"] = 2
    s["x-airlock-delegations"] = {"keys": "everyone", "roles": 1}
    return bundle(kit.release_json, kit.files, root_json=json.dumps({"signed": s, "signatures": []}).encode())


@case("arbitrary-rotated-root-with-float", "TUF-arbitrary", "canonical JSON")
def _(kit: Kit) -> bytes:
    # Unsigned; a float makes the signed bytes uncomputable: an uncaught SerializationError.
    s = kit.trust_signed()
    s["version"] = 2
    s["roles"]["root"]["keyids"].append(0.5)
    return bundle(kit.release_json, kit.files, root_json=json.dumps({"signed": s, "signatures": []}).encode())


@case("arbitrary-rotated-root-ring-signer-without-rings", "TUF-wrong", "needs a list of ring names")
def _(kit: Kit) -> bytes:
    # Signed by the real root key, but a ring signer whose rings are a string.
    s = kit.trust_signed()
    s["version"] = 2
    s["x-airlock-delegations"]["roles"][0]["rings"] = "canary"
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.root], release_form=False))


# TUF: rollback --------------------------------------------------------------------


@case("rollback-older-sequence", "TUF-rollback", "older than sequence",
      device_seen=ACTIVE_SEQUENCE)
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(version=ACTIVE_SEQUENCE - 1))


@case("rollback-root-same-version-other-content", "TUF-rollback",
      "different trust root claims version")
def _(kit: Kit) -> bytes:
    s = kit.trust_signed()
    s["expires"] = _when(timedelta(days=3650))
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.root], release_form=False))


# TUF: fast-forward -----------------------------------------------------------------


@case("fastforward-rogue-huge-sequence", "TUF-fastforward", "signed by unknown key")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(version=2**63 - 1), [kit.rogue])


@case("fastforward-unrepresentable-sequence", "TUF-fastforward", "sequence")
def _(kit: Kit) -> bytes:
    # Even the real key must not push a device past any sequence it can ever see again.
    return _resigned(kit, lambda s: s.update(version=10**30))


@case("fastforward-zero-sequence", "TUF-fastforward", "version")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(version=0))


@case("fastforward-root-version-jump", "TUF-fastforward", "jumps from version 1 to 5")
def _(kit: Kit) -> bytes:
    s = kit.trust_signed()
    s["version"] = 5
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.root], release_form=False))


# TUF: indefinite freeze -------------------------------------------------------------


@case("freeze-expired-release", "TUF-freeze", "expired at")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(expires=_when(-timedelta(days=1))))


@case("freeze-expired-rotated-root", "TUF-freeze", "trust root expired")
def _(kit: Kit) -> bytes:
    s = kit.trust_signed()
    s["version"] = 2
    s["expires"] = _when(-timedelta(hours=1))
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.root], release_form=False))


@case("freeze-bad-expiry-format", "TUF-freeze", "not valid TUF metadata")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(expires="never"))


# TUF: endless data ------------------------------------------------------------------


@case("endless-member-longer-than-signed", "TUF-endless", "signed metadata says")
def _(kit: Kit) -> bytes:
    path, _data = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        if p == path:  # the header claims 1 GiB; the reader must not start reading it
            out += member(tarinfo(p, 1 << 30), d) + b"\xaa" * (1 << 16)
            return out
        out += regular(p, d)
    raise AssertionError


@case("endless-zeros", "TUF-endless", "bundle is empty")
def _(kit: Kit) -> bytes:
    return b"\0" * (4 << 20)


@case("endless-random-bytes", "TUF-endless", "not a bundle")
def _(kit: Kit) -> bytes:
    return hashlib.sha256(b"seed").digest() * (1 << 15)


@case("endless-trailing-members-after-listed", "TUF-endless", "not listed in the signed metadata")
def _(kit: Kit) -> bytes:
    junk = b"\xbb" * 4096
    return bundle(kit.release_json, [*kit.files, ("blobs/sha256/" + hashlib.sha256(junk).hexdigest(), junk)])


# TUF: extraneous dependencies -------------------------------------------------------


@case("extraneous-unlisted-blob", "TUF-extraneous", "not listed in the signed metadata")
def _(kit: Kit) -> bytes:
    extra = b"#!/bin/sh\nrm -rf /\n"
    files = list(kit.files)
    files.insert(2, ("blobs/sha256/" + hashlib.sha256(extra).hexdigest(), extra))
    return bundle(kit.release_json, files)


@case("extraneous-file-outside-layout", "TUF-extraneous", "outside the bundle layout")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, [*kit.files[:2], ("install.sh", b"echo pwned\n"), *kit.files[2:]])


@case("extraneous-model-blob-not-carried", "TUF-extraneous", "not in the bundle")
def _(kit: Kit) -> bytes:
    # Validly signed metadata naming a model blob the bundle neither carries nor expects.
    def mutate(s: dict[str, Any]) -> None:
        s["airlock"]["models"][0]["blob"] = "sha256:" + "ab" * 32
    return _resigned(kit, mutate)


@case("extraneous-image-blob-not-carried", "TUF-extraneous", "not in the bundle")
def _(kit: Kit) -> bytes:
    def mutate(s: dict[str, Any]) -> None:
        s["airlock"]["images"] = [{
            "ref": "registry.local/app:1", "manifest": "sha256:" + "cd" * 32,
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "blobs": ["sha256:" + "ef" * 32],
        }]
    return _resigned(kit, mutate)


@case("extraneous-index-names-missing-manifest", "TUF-extraneous", "index.json")
def _(kit: Kit) -> bytes:
    # index.json (validly signed) points at a manifest the bundle lacks.
    index = json.loads(dict(kit.files)["index.json"])
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": "sha256:" + "12" * 32, "size": 999})
    data = json.dumps(index).encode()

    def mutate(s: dict[str, Any]) -> None:
        set_target(s, "index.json", data)
    return _resigned(kit, mutate, files=_swap_file(kit, "index.json", data))


@case("oci-manifest-layer-size-lies", "TUF-extraneous", "the bundle carries")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("manifest")
    m = json.loads(data)
    m["layers"][0]["size"] += 1000
    s, files = kit.rewrite_blob(path, json.dumps(m).encode())
    return bundle(sign_dict(s, [kit.release]), files)


@case("oci-manifest-not-json", "TUF-extraneous", "is not valid JSON")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("manifest")
    s, files = kit.rewrite_blob(path, b"\x00" + data)
    return bundle(sign_dict(s, [kit.release]), files)


@case("oci-index-not-json", "TUF-extraneous", "index.json is not valid JSON")
def _(kit: Kit) -> bytes:
    data = b'{"manifests": [' * 5000

    def mutate(s: dict[str, Any]) -> None:
        set_target(s, "index.json", data)
    return _resigned(kit, mutate, files=_swap_file(kit, "index.json", data))


@case("oci-blob-before-index", "TUF-extraneous", "comes before index.json")
def _(kit: Kit) -> bytes:
    # Same signed metadata, members reordered: a manifest could pass before its index.
    index = [f for f in kit.files if f[0] == "index.json"]
    rest = [f for f in kit.files if f[0] != "index.json"]
    return bundle(kit.release_json, [*rest, *index])


# TUF: mix-and-match -----------------------------------------------------------------


@case("mixmatch-new-metadata-old-blobs", "TUF-mixmatch", "index.json")
def _(kit: Kit) -> bytes:
    return bundle(kit.other_release_json, kit.files)


@case("mixmatch-old-metadata-new-index", "TUF-mixmatch", "index.json")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, _swap_file(kit, "index.json", dict(kit.other_files)["index.json"]))


@case("mixmatch-signatures-of-other-release", "TUF-mixmatch", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    d = json.loads(kit.release_json)
    d["signatures"] = json.loads(kit.other_release_json)["signatures"]
    return bundle(json.dumps(d).encode(), kit.files)


@case("mixmatch-root-of-other-organisation", "TUF-mixmatch", "old root's keys")
def _(kit: Kit) -> bytes:
    from keys.trust import create_root

    other = create_root([kit.rogue_root], [kit.rogue.public_key], version=2)
    return bundle(kit.release_json, kit.files, root_json=other.to_bytes())


# TUF: wrong software ----------------------------------------------------------------


@case("wrong-ring-for-device", "TUF-wrong", "this device is in ring 'canary'", ring="canary")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(rings=["prod"]))


@case("wrong-canary-signer-targets-prod", "TUF-wrong", "may deploy only to rings canary")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(rings=["prod"]), list(kit.canary))


@case("wrong-canary-signer-targets-all", "TUF-wrong", "all rings")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: None, list(kit.canary))


@case("wrong-model-file-name-traversal", "TUF-wrong", "not a plain name")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0].update(file_name="../../bin/sh"))


@case("wrong-release-name-traversal", "TUF-wrong", "not a plain name")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(name="../../etc"))


@case("wrong-blob-listed-under-other-digest", "TUF-wrong", "under another digest")
def _(kit: Kit) -> bytes:
    path, _data = kit.blob("model")

    def mutate(s: dict[str, Any]) -> None:
        s["targets"]["blobs/sha256/" + "00" * 32] = s["targets"].pop(path)
    return _resigned(kit, mutate)


# TUF: key compromise below threshold ------------------------------------------------


@case("threshold-one-of-two-canary", "TUF-threshold", "1 of 2 signatures")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(rings=["canary"]), [kit.canary[0]])


@case("threshold-same-signature-twice", "TUF-threshold", "signature")
def _(kit: Kit) -> bytes:
    s = kit.signed()
    s["airlock"]["rings"] = ["canary"]
    d = json.loads(sign_dict(s, [kit.canary[0]]))
    d["signatures"] = d["signatures"] * 2  # one key counted twice?
    return bundle(json.dumps(d).encode(), kit.files)


@case("threshold-rotated-root-needs-two", "TUF-threshold", "its own keys")
def _(kit: Kit) -> bytes:
    # The new root asks for two root signatures; only the stolen old key signs.
    s = kit.trust_signed()
    s["version"] = 2
    rogue = kit.rogue_root.public_key
    s["keys"][rogue.keyid] = rogue.to_dict()
    s["roles"]["root"]["keyids"].append(rogue.keyid)
    s["roles"]["root"]["threshold"] = 2
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.root], release_form=False))


# tar: traversal, absolute paths -------------------------------------------------------


def _renamed(kit: Kit, which: str, name: str, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    path, _data = kit.blob(which)
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(name, len(d)), d, fmt) if p == path else regular(p, d)
    return out + END


@case("tar-dotdot", "TAR-traversal", "unsafe path")
def _(kit: Kit) -> bytes:
    return _renamed(kit, "model", "../../../../tmp/airlock-pwned")


@case("tar-dotdot-inside-layout", "TAR-traversal", "unsafe path")
def _(kit: Kit) -> bytes:
    return _renamed(kit, "model", "blobs/sha256/../../../etc/cron.d/x")


@case("tar-absolute", "TAR-traversal", "unsafe path")
def _(kit: Kit) -> bytes:
    return _renamed(kit, "model", "/etc/cron.d/airlock")


@case("tar-backslash", "TAR-traversal", "unsafe path")
def _(kit: Kit) -> bytes:
    return _renamed(kit, "model", "blobs\\sha256\\..\\..\\x")


@case("tar-dot-prefix", "TAR-traversal", "unsafe path")
def _(kit: Kit) -> bytes:
    return _renamed(kit, "index", "./index.json")


@case("tar-pax-path-override", "TAR-pax", "unsafe path")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    ti = tarinfo(path, len(data))
    ti.pax_headers = {"path": "../../../root/.ssh/authorized_keys"}
    return bundle(kit.release_json, []).removesuffix(END) + b"".join(
        member(ti, d) if p == path else regular(p, d) for p, d in kit.files) + END


@case("tar-pax-nul-in-path", "TAR-pax", "unsafe path")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    ti = tarinfo(path, len(data))
    ti.pax_headers = {"path": path + "\x00../../x"}
    return bundle(kit.release_json, []).removesuffix(END) + b"".join(
        member(ti, d) if p == path else regular(p, d) for p, d in kit.files) + END


# tar: links ----------------------------------------------------------------------------


@case("tar-symlink-blob", "TAR-links", "is a link")
def _(kit: Kit) -> bytes:
    path, _ = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(p, 0, tarfile.SYMTYPE, linkname="/etc/shadow")) if p == path else regular(p, d)
    return out + END


@case("tar-hardlink-blob", "TAR-links", "is a link")
def _(kit: Kit) -> bytes:
    path, _ = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(p, 0, tarfile.LNKTYPE, linkname="/etc/passwd")) if p == path else regular(p, d)
    return out + END


@case("tar-symlink-then-write-through", "TAR-links", "is a link")
def _(kit: Kit) -> bytes:
    # Classic: a link named like a directory, then a file "inside" it.
    return (regular("airlock/release.json", kit.release_json)
            + member(tarinfo("blobs/sha256", 0, tarfile.SYMTYPE, linkname="/tmp"))
            + b"".join(regular(p, d) for p, d in kit.files) + END)


# tar: special files ----------------------------------------------------------------------


def _special(kit: Kit, type: bytes, **kw: Any) -> bytes:
    path, _ = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(p, 0, type, **kw)) if p == path else regular(p, d)
    return out + END


@case("tar-char-device", "TAR-special", "special file")
def _(kit: Kit) -> bytes:
    return _special(kit, tarfile.CHRTYPE, devmajor=1, devminor=3)


@case("tar-block-device", "TAR-special", "special file")
def _(kit: Kit) -> bytes:
    return _special(kit, tarfile.BLKTYPE, devmajor=8, devminor=0)


@case("tar-fifo", "TAR-special", "special file")
def _(kit: Kit) -> bytes:
    return _special(kit, tarfile.FIFOTYPE)


@case("tar-directory", "TAR-special", "is a directory")
def _(kit: Kit) -> bytes:
    return (regular("airlock/release.json", kit.release_json)
            + member(tarinfo("blobs/sha256", 0, tarfile.DIRTYPE, mode=0o777))
            + b"".join(regular(p, d) for p, d in kit.files) + END)


@case("tar-contiguous-type", "TAR-special", "special file")
def _(kit: Kit) -> bytes:
    path, _data = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(p, len(d), tarfile.CONTTYPE), d) if p == path else regular(p, d)
    return out + END


# tar: duplicates and order ------------------------------------------------------------------


@case("tar-duplicate-blob", "TAR-duplicate", "appears twice")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    evil = bytes(len(data))
    return bundle(kit.release_json, [*kit.files, (path, evil)])


@case("tar-duplicate-release", "TAR-duplicate", "appears twice")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, [("airlock/release.json", kit.other_release_json), *kit.files])


@case("tar-release-not-first", "TAR-duplicate", "must start with airlock/release.json")
def _(kit: Kit) -> bytes:
    return b"".join(regular(p, d) for p, d in kit.files[:1]) + bundle(kit.release_json, kit.files[1:])


@case("tar-root-after-release", "TAR-duplicate", "must come first")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, [("airlock/root.json", kit.trust_path.read_bytes()), *kit.files])


@case("tar-missing-blob", "TAR-duplicate", "listed in the signed metadata")
def _(kit: Kit) -> bytes:
    path, _ = kit.blob("model")
    return bundle(kit.release_json, _swap_file(kit, path, None))


# tar: sparse and oversized -----------------------------------------------------------------


@case("tar-gnu-sparse", "TAR-sparse", "only regular files")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    ti = tarinfo(path, len(data), tarfile.GNUTYPE_SPARSE)
    ti.sparse = [(0, len(data))]
    buf = bytearray(ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
    # GNU sparse map: one (offset, numbytes) entry and the real size, octal.
    buf[386:398] = b"%011o\0" % 0
    buf[398:410] = b"%011o\0" % len(data)
    buf[483:495] = b"%011o\0" % (1 << 40)  # realsize: a 1 TiB file
    head = fix_checksum(bytes(buf))
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += head + d + b"\0" * (-len(d) % BLOCK) if p == path else regular(p, d)
    return out + END


@case("tar-pax-sparse", "TAR-sparse", "only regular files")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    ti = tarinfo(path, len(data))
    ti.pax_headers = {"GNU.sparse.size": str(1 << 40), "GNU.sparse.map": f"0,{len(data)}"}
    return bundle(kit.release_json, []).removesuffix(END) + b"".join(
        member(ti, d) if p == path else regular(p, d) for p, d in kit.files) + END


@case("tar-size-smaller-than-signed", "TAR-sparse", "signed metadata says")
def _(kit: Kit) -> bytes:
    path, _data = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(p, len(d) // 2), d[: len(d) // 2]) if p == path else regular(p, d)
    return out + END


@case("tar-pax-size-override", "TAR-pax", "signed metadata says")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    ti = tarinfo(path, len(data))
    ti.pax_headers = {"size": str(1 << 33)}
    return bundle(kit.release_json, []).removesuffix(END) + b"".join(
        member(ti, d) if p == path else regular(p, d) for p, d in kit.files) + END


@case("tar-pax-huge-extended-header", "TAR-pax", "extended tar header")
def _(kit: Kit) -> bytes:
    # A pax header that claims 1 GiB of records: read whole into memory by a naive reader.
    head = tarinfo("././@PaxHeader", 1 << 30, tarfile.XHDTYPE)
    return (member(head, b"30 path=airlock/release.json\n") + b"x" * 4096)


@case("tar-gnu-huge-longname", "TAR-pax", "extended tar header")
def _(kit: Kit) -> bytes:
    head = tarinfo("././@LongLink", 1 << 30, tarfile.GNUTYPE_LONGNAME)
    return member(head, b"airlock/release.json\0", tarfile.GNU_FORMAT) + b"y" * 4096


@case("tar-pax-sparse-map-unterminated", "TAR-pax", "not a bundle")
def _(kit: Kit) -> bytes:
    # A pax 1.0 sparse map that never ends: tarfile's parser raised ValueError (exit 1).
    ti = tarinfo("airlock/release.json", BLOCK)
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                      "GNU.sparse.realsize": str(1 << 40)}
    return member(ti, b"1000\n" + b"7" * (BLOCK - 5))


@case("tar-pax-sparse-map-garbage", "TAR-pax", "not a bundle")
def _(kit: Kit) -> bytes:
    ti = tarinfo("airlock/release.json", BLOCK)
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    return member(ti, b"lots\n" + b"\0" * (BLOCK - 5)) + END


# tar: corrupt -----------------------------------------------------------------------------------


@case("tar-bad-header-checksum", "TAR-corrupt", "not a bundle")
def _(kit: Kit) -> bytes:
    b = bytearray(kit.good)
    b[0] ^= 0x01  # first header's name changes; its checksum no longer matches
    return bytes(b)


@case("tar-corrupt-later-header", "TAR-corrupt", "lacks")
def _(kit: Kit) -> bytes:
    hdr = header_offset(kit.good, kit.blob("model")[0])
    b = bytearray(kit.good)
    b[hdr + 148] = ord("9")  # checksum field garbage
    return bytes(b)


@case("tar-truncated-in-blob", "TAR-corrupt", "truncated")
def _(kit: Kit) -> bytes:
    _path, data = kit.blob("model")
    start = kit.good.find(data)
    return kit.good[: start + len(data) // 2]


@case("tar-truncated-in-header", "TAR-corrupt", "lacks")
def _(kit: Kit) -> bytes:
    return kit.good[: header_offset(kit.good, kit.blob("model")[0]) + 100]


@case("tar-truncated-after-metadata", "TAR-corrupt", "listed in the signed metadata")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, [])


@case("tar-release-not-json", "TAR-corrupt", "not valid TUF metadata")
def _(kit: Kit) -> bytes:
    return bundle(b"\xff\xfe not json at all", kit.files)


# resources --------------------------------------------------------------------------------------


@case("bomb-gzip-bundle", "RES-bomb", "not a bundle")
def _(kit: Kit) -> bytes:
    # Bundles are never compressed; a gzip stream (here of 64 MiB of zeros) is refused unread.
    return gzip.compress(kit.good + b"\0" * (64 << 20), 9)


@case("bomb-gzip-model-inside", "RES-bomb", "sha256 is")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    fake = gzip.compress(b"\0" * (1 << 20))[: len(data)].ljust(len(data), b"\0")
    return bundle(kit.release_json, _swap_file(kit, path, fake))


@case("huge-release-header", "RES-huge", "larger than any metadata may be")
def _(kit: Kit) -> bytes:
    return member(tarinfo("airlock/release.json", 1 << 40), kit.release_json) + END


@case("huge-root-header", "RES-huge", "larger than any metadata may be")
def _(kit: Kit) -> bytes:
    return member(tarinfo("airlock/root.json", 64 << 20), b"{}") + END


@case("huge-signed-model-length", "RES-disk", "signed metadata says",
      agent_exit=(3, 5))
def _(kit: Kit) -> bytes:
    # Validly signed metadata promising a 1 TiB model: a device must not start writing it.
    path, _ = kit.blob("inputs")
    return _resigned(kit, lambda s: s["targets"][path].update(length=1 << 40))


@case("disk-many-listed-blobs", "RES-disk", "lacks", agent_exit=(3, 5),
      agent_error="needs 2000.0 GiB")
def _(kit: Kit) -> bytes:
    # 2,000 listed blobs of 1 GiB each: 2 TiB promised, none carried.
    def mutate(s: dict[str, Any]) -> None:
        for i in range(2000):
            h = hashlib.sha256(str(i).encode()).hexdigest()
            s["targets"]["blobs/sha256/" + h] = {"length": 1 << 30, "hashes": {"sha256": h}}
    return _resigned(kit, mutate)


@case("deep-json-release", "RES-deep", "not valid TUF metadata")
def _(kit: Kit) -> bytes:
    # Deep enough to exhaust any recursive parser, yet within MAX_METADATA_VALUES so the
    # parser, not the value count, is what refuses it.
    deep = b'{"signed":' + b"[" * 100_000 + b"]" * 100_000 + b',"signatures":[]}'
    return bundle(deep, kit.files)


@case("deep-json-signed-flags", "RES-deep", "deep")
def _(kit: Kit) -> bytes:
    # Validly signed, but nested deeper than any release needs.
    def mutate(s: dict[str, Any]) -> None:
        v: Any = 1
        for _ in range(500):
            v = {"a": v}
        s["airlock"]["flags"] = {"x": v}
    return _resigned(kit, mutate)


@case("deep-json-huge-integer", "RES-deep", "not valid TUF metadata")
def _(kit: Kit) -> bytes:
    d = json.loads(kit.release_json)
    d["signed"]["version"] = 123456789
    text = json.dumps(d).encode().replace(b"123456789", b"9" * 5000)
    return bundle(text, kit.files)


@case("deep-json-nan-budget", "RES-deep", "cannot be signed as JSON")
def _(kit: Kit) -> bytes:
    s = kit.signed()
    s["airlock"]["models"][0]["health"]["max_p95_ms"] = float("nan")
    payload = json.dumps(s, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    d = {"signed": s, "signatures": [kit.release.sign(payload).to_dict()]}
    return bundle(json.dumps(d).encode(), kit.files)


@case("deep-json-float-overflow", "RES-deep", "health")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0]["health"].update(runs=10**400))


# text: whatever the media says reaches a terminal and the journal inert -----------------------

# Clear the screen, set the window title, switch to red; then a right-to-left override.
HOSTILE_TEXT = "\x1b[2J\x1b]0;pwned\x07\x1b[31m\u202e\x9b"


def _with_member(kit: Kit, name: str) -> bytes:
    """The good bundle plus one unlisted member called ``name``, right after index.json."""
    junk = b"\xcc" * 16
    return bundle(kit.release_json, [*kit.files[:2], (name, junk), *kit.files[2:]])


@case("text-esc-in-member-name", "TXT-inert", "not listed in the signed metadata")
def _(kit: Kit) -> bytes:
    return _with_member(kit, "blobs/sha256/" + HOSTILE_TEXT)


@case("text-undecodable-member-name", "TXT-inert", "not listed in the signed metadata")
def _(kit: Kit) -> bytes:
    # Bytes that are not UTF-8 (tarfile hands them on as lone surrogates).
    return _with_member(kit, "blobs/sha256/\udcff\udcfe" + HOSTILE_TEXT)


@case("text-long-member-name", "TXT-inert", "not listed in the signed metadata")
def _(kit: Kit) -> bytes:
    # 1,500 characters in a pax path: longer than any message line may be, well inside
    # any bound on extended headers.
    return _with_member(kit, "blobs/sha256/" + HOSTILE_TEXT + "a" * 1500)


@case("text-esc-in-unsigned-metadata", "TXT-inert", "release metadata")
def _(kit: Kit) -> bytes:
    # Not signed by anyone: a version and a key id meant for the technician's terminal.
    d = json.loads(kit.release_json)
    d["signed"]["airlock"]["version"] = HOSTILE_TEXT + "1.0" + "v" * 20_000
    d["signatures"][0]["keyid"] = HOSTILE_TEXT + "ab" * 32
    return bundle(json.dumps(d).encode(), kit.files)


@case("text-surrogate-in-unsigned-metadata", "TXT-inert", "release metadata")
def _(kit: Kit) -> bytes:
    # A lone surrogate (legal as a JSON escape, not encodable as UTF-8) in every text.
    d = json.loads(kit.release_json)
    d["signed"]["airlock"]["version"] = "\udcff" + HOSTILE_TEXT
    d["signed"]["airlock"]["name"] = "vision\udcff"
    d["signatures"][0]["keyid"] = "\ud800" + "ab" * 32
    return bundle(json.dumps(d).encode(), kit.files)


# parsing before the signature check (issue 13, class 3) -----------------------------------------


def _extended(type: bytes, data: bytes, name: str = "././@PaxHeader") -> bytes:
    """One extended header (pax local or global, GNU long name) carrying ``data``."""
    fmt = tarfile.GNU_FORMAT if type == tarfile.GNUTYPE_LONGNAME else tarfile.PAX_FORMAT
    return member(tarinfo(name, len(data), type), data, fmt)


# The worst input for tarfile's pax parser on Python < 3.11.10 (CVE-2024-6232): a run of
# digits, which its hdrcharset search scans in quadratic time.
def _quadratic_pax(size: int) -> bytes:
    return b"1" * size


@case("parse-pax-header-chain", "RES-parse", "extended tar headers in a row")
def _(kit: Kit) -> bytes:
    # tarfile recursed once per header: 5,000 crashed it with RecursionError (exit 1).
    chain = _extended(tarfile.XHDTYPE, b"29 path=airlock/release.json\n") * 5000
    return chain + bundle(kit.release_json, kit.files)


@case("parse-gnu-longname-chain", "RES-parse", "extended tar headers in a row")
def _(kit: Kit) -> bytes:
    link = _extended(tarfile.GNUTYPE_LONGNAME, b"airlock/release.json\0", "././@LongLink")
    return link * 5000 + bundle(kit.release_json, kit.files)


@case("parse-pax-header-chain-before-blob", "RES-parse", "extended tar headers in a row")
def _(kit: Kit) -> bytes:
    # After a good signed head, in the part of the tar the signature does not cover.
    path, _data = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        if p == path:
            out += _extended(tarfile.XHDTYPE, b"12 uid=1000\n") * 3
        out += regular(p, d)
    return out + END


@case("parse-pax-header-cve-2024-6232", "RES-parse", "extended tar header")
def _(kit: Kit) -> bytes:
    # Under the old 1 MiB cap: about 25 minutes of CPU on Python 3.11.7, holding the lock.
    return (_extended(tarfile.XHDTYPE, _quadratic_pax((1 << 20) - 512))
            + bundle(kit.release_json, kit.files))


@case("parse-pax-headers-on-every-member", "RES-parse", "bytes of extended tar headers")
def _(kit: Kit) -> bytes:
    # Each header within the cap, a global and a local one on every member: the whole
    # bundle's extended headers are bounded too.
    worst = _extended(tarfile.XGLTYPE, _quadratic_pax(4096)) + _extended(
        tarfile.XHDTYPE, _quadratic_pax(4096))
    out = worst + regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += worst + regular(p, d)
    return out + END


@case("parse-negative-size-header", "RES-parse", "negative size")
def _(kit: Kit) -> bytes:
    # A base-256 size of -1024 on a pax header: tarfile would read backwards.
    head = bytearray(tarinfo("././@PaxHeader", 0, tarfile.XHDTYPE).tobuf(tarfile.USTAR_FORMAT))
    head[124:136] = b"\xff" + ((-1024) & ((1 << 88) - 1)).to_bytes(11, "big")
    return fix_checksum(bytes(head)) + bundle(kit.release_json, kit.files)


def _empty_lists(size: int) -> bytes:
    """Unsigned metadata of ``size`` bytes, nearly all ``[]``: the most objects per byte."""
    head = b'{"signatures":[],"signed":{"_type":"targets","x":['
    return head + (b"[]," * ((size - len(head) - 2) // 3))[:-1] + b"]}}"


@case("parse-release-json-empty-lists", "RES-parse", "JSON values")
def _(kit: Kit) -> bytes:
    # 32 MiB of these made the agent allocate ~900 MiB before the signature check.
    return bundle(_empty_lists(3 << 20), kit.files)


@case("parse-root-json-empty-lists", "RES-parse", "JSON values")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, kit.files, root_json=_empty_lists(3 << 20))


@case("parse-release-json-32mib", "RES-parse", "larger than any metadata may be")
def _(kit: Kit) -> bytes:
    # The review's input: refused from its tar header, before a byte of it is read.
    return bundle(_empty_lists(32 << 20), kit.files)


# signed but unusable: validly signed by the real key (an attacker holding it, or a careless
# release manager); the bundler refuses to sign the same at build, with exit 2.


def _model_edit(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["airlock"]["models"][0].update(fields)


@case("signed-text-nul-in-hook", "SIGNED-text", "'airlock.hooks.post_switch' holds a control "
      "character (U+0000)")
def _(kit: Kit) -> bytes:
    # The shell cannot take a NUL: the agent crashed with ValueError (exit 1) after the switch.
    return _resigned(kit, lambda s: s["airlock"]["hooks"].update(post_switch="echo \0 ok"))


@case("signed-text-nul-in-probe", "SIGNED-text", "'airlock.hooks.probe' holds a control character")
def _(kit: Kit) -> bytes:
    # urllib raised InvalidURL (exit 1) after the switch.
    return _resigned(kit, lambda s: s["airlock"]["hooks"].update(probe="http://127.0.0.1:1/\0"))


@case("signed-text-escape-in-version", "SIGNED-text", "'airlock.version' holds a control character")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(version="1.0\x1b]0;owned\x07"))


@case("signed-text-bidi-in-flag-name", "SIGNED-text", "bidirectional override (U+202E)")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(flags={"safe\u202eeurt": True}))


@case("signed-text-newline-in-provider", "SIGNED-text", "providers[0]' holds a control character")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0]["health"].update(
        providers=["CPUExecutionProvider\nX"]))


@case("signed-value-huge-flag-integer", "SIGNED-values", "'airlock.flags.limit' is an integer beyond")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(flags={"limit": 2**64}))


@case("signed-value-zero-timeout", "SIGNED-values", "health.timeout_s' must be more than 0")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0]["health"].update(timeout_s=0))


@case("signed-value-negative-tolerance", "SIGNED-values", "health.atol' must not be negative")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0]["health"].update(atol=-1))


@case("signed-value-fractional-runs", "SIGNED-values", "health.runs' must be an integer")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0]["health"].update(runs=2.5))


@case("signed-value-ring-not-a-name", "SIGNED-values", "'airlock.rings[0]' is not a plain name")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(rings=["../canary"]))


@case("signed-file-model-named-like-golden", "SIGNED-files", "is the name of the golden outputs")
def _(kit: Kit) -> bytes:
    # Linking the model over the golden outputs crashed the install (FileExistsError).
    return _resigned(kit, _model_edit(file_name="outputs.npz"))


@case("signed-file-duplicate-model-name", "SIGNED-files", "lists model 'detector' twice")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"].append(s["airlock"]["models"][0]))


@case("signed-file-external-data-traversal", "SIGNED-files", "'airlock.models[0].data' is not a "
      "plain name")
def _(kit: Kit) -> bytes:
    inputs = kit.signed()["airlock"]["models"][0]["health"]["inputs"]
    return _resigned(kit, _model_edit(data={"../../../etc/cron.d/x": inputs}))


@case("signed-file-external-data-named-like-model", "SIGNED-files",
      "external data file name 'model.onnx' is the name of the model file")
def _(kit: Kit) -> bytes:
    inputs = kit.signed()["airlock"]["models"][0]["health"]["inputs"]
    return _resigned(kit, _model_edit(data={"model.onnx": inputs}))


# -- script entry: write the corpus -------------------------------------------------------------


def write_corpus(kit: Kit, out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for c in CASES:
        path = c.write(kit, out)
        index.append({"id": c.id, "threat": c.threat, "file": path.name, "exit": c.exit,
                      "error": c.error, "ring": c.ring, "device_seen": c.device_seen})
    (out / "cases.json").write_text(json.dumps(index, indent=1))
    (out / "trust.json").write_bytes(kit.trust_path.read_bytes())
    return index


def main(argv: list[str]) -> int:
    """``python -m tests.hostile.cases [OUT]``: fresh keys, the kit, every case, an index."""
    from keys.keyfile import generate_keypair

    out = Path(argv[0] if argv else "corpus")
    keydir = out / "keys"
    root_key, _ = generate_keypair("root", keydir, force=True)
    release_key, _ = generate_keypair("release", keydir, force=True)
    kit = Kit.create(out / "kit", root_key=root_key, release_key=release_key)
    index = write_corpus(kit, out)
    print(f"wrote {len(index)} cases to {out}; verify with: "
          f"airlock verify {out}/CASE.airlock --trust {out}/trust.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
