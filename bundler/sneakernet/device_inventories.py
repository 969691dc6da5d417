"""Device inventories on the host: checked, read, and turned into what a delta bundle omits.

A device writes ``airlock-agent inventory -o cam-7.inventory.json`` (signed
with its device key, ``agent/observe/inventory.py``); the file travels home on the
stick, and the host builds a delta that leaves out every blob present on
*all* the devices it was given::

    inv = read_inventory(Path("cam-7.inventory.json").read_bytes())          # its own key
    inv = read_inventory(data, keys=[load_public_key(Path("cam-7.pub"))])   # an enrolled key
    delta = plan_delta(release, [inv, other])   # keys.release.Delta: expects + inventories
    release.delta = delta

``keys.device.verify_document`` decides the signature; this module reads the
body strictly (every field it uses, typed) so a hostile but validly signed
inventory is a clean error, never a crash. A forged inventory cannot hurt a
device: at worst the delta leaves out a blob the device lacks, and the
device refuses it (exit 3) before changing anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key

from airlock.console import human_size, read_input
from airlock.errors import FormatError, SignatureError, UsageError
from airlock.format.oci import BLOB_PREFIX, is_digest
from airlock.limits import MAX_NAME_LENGTH
from keys.device import INVENTORY_TYPE, verify_document
from keys.release import Delta, InventoryRef, Release, is_plain_name

__all__ = ["Inventory", "inventory_text", "load_inventory", "plan_delta", "read_inventory"]


@dataclass(frozen=True)
class Inventory:
    """A checked device inventory: who signed it, and what the device holds."""

    sha256: str  # of the file, hex
    keyid: str
    pinned: bool  # signed by a key the caller gave (else only by the key inside the file)
    device_id: str
    ring: str | None
    time: str
    active: str | None
    sequences: dict[str, int]
    blobs: dict[str, int]  # digest -> size
    body: dict[str, Any] = field(repr=False)
    path: str = "-"

    def ref(self) -> InventoryRef:
        return InventoryRef(self.device_id, self.keyid, self.sha256, self.time)

    def active_release(self, name: str | None = None) -> dict[str, Any] | None:
        """The summary of the active release (or of the newest release named ``name``)."""
        releases = [r for r in self.body.get("releases", [])
                    if isinstance(r, dict) and "error" not in r and isinstance(r.get("id"), str)]
        if name is None:
            return next((r for r in releases if r["id"] == self.active), None)
        named = [r for r in releases if r.get("name") == name
                 and isinstance(r.get("sequence"), int)]
        if not named:
            return None
        active = next((r for r in named if r["id"] == self.active), None)
        return active or max(named, key=lambda r: int(r["sequence"]))


def read_inventory(data: bytes, keys: Sequence[Key] = (), path: str = "-") -> Inventory:
    """Check ``data``'s signature (by one of ``keys`` when given) and read its body strictly."""
    doc = verify_document(data, INVENTORY_TYPE)
    pinned = False
    if keys:
        match = next((k for k in keys if k.keyid == doc.keyid), None)
        if match is None:
            raise SignatureError(
                f"inventory {path} is signed by device key {doc.keyid[:16]}…, none of the "
                f"{len(keys)} key(s) given with --device-key")
        doc = verify_document(data, INVENTORY_TYPE, key=match)
        pinned = True
    body = doc.body
    device_id = _text(body, "device_id", path)
    ring = body.get("ring")
    if ring is not None and not is_plain_name(ring):
        raise FormatError(f"inventory {path}: 'ring' is not a plain name")
    for key in ("active", "previous"):
        if body.get(key) is not None and not is_plain_name(body.get(key)):
            raise FormatError(f"inventory {path}: '{key}' is not a release id")
    _check_releases(body.get("releases", []), path)
    blobs: dict[str, int] = {}
    raw_blobs = body.get("blobs")
    if not isinstance(raw_blobs, list):
        raise FormatError(f"inventory {path}: 'blobs' is not a list")
    for b in raw_blobs:
        if not (isinstance(b, dict) and is_digest(b.get("digest"))
                and isinstance(b.get("size"), int) and not isinstance(b["size"], bool)
                and b["size"] >= 0):
            raise FormatError(f"inventory {path}: a blob entry lacks a sha256 digest or size")
        blobs[b["digest"]] = b["size"]
    raw_seq = body.get("sequences", {})
    if not isinstance(raw_seq, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in raw_seq.items()):
        raise FormatError(f"inventory {path}: 'sequences' is not a map of names to integers")
    active = body.get("active")
    return Inventory(
        sha256=hashlib.sha256(data).hexdigest(), keyid=doc.keyid, pinned=pinned,
        device_id=device_id, ring=ring, time=_text(body, "time", path),
        active=active if isinstance(active, str) else None, sequences=dict(raw_seq),
        blobs=blobs, body=body, path=path)


def load_inventory(path: Path, keys: Sequence[Key] = ()) -> Inventory:
    """:func:`read_inventory` of a file named on the command line."""
    return read_inventory(read_input(path, "inventory"), keys, str(path))


def _check_releases(releases: object, path: str) -> None:
    """Every release summary with the types ``inventory show`` and a delta read: a validly
    signed inventory is still the device's word, and an odd one is refused in one line."""
    if not isinstance(releases, list):
        raise FormatError(f"inventory {path}: 'releases' is not a list")
    for i, r in enumerate(releases):
        where = f"inventory {path}: releases[{i}]"
        if not isinstance(r, dict) or not is_plain_name(r.get("id")):
            raise FormatError(f"{where} is not a release summary with a plain 'id'")
        if "error" in r:
            _text(r, "error", path, 500)
            continue
        if not is_plain_name(r.get("name")) or not isinstance(r.get("version"), str) \
                or not r["version"].isprintable() or len(r["version"]) > MAX_NAME_LENGTH:
            raise FormatError(f"{where}: 'name' or 'version' is not a plain name")
        seq = r.get("sequence")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise FormatError(f"{where}: 'sequence' is not a whole number")
        for key in ("models", "images"):
            if not isinstance(r.get(key, []), list):
                raise FormatError(f"{where}: '{key}' is not a list")


def _text(body: dict[str, Any], key: str, path: str, most: int = MAX_NAME_LENGTH) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.isprintable() or len(value) > most:
        raise FormatError(f"inventory {path}: '{key}' is missing or not printable text")
    return value


def plan_delta(release: Release, inventories: Sequence[Inventory]) -> Delta:
    """The delta of ``release`` against devices holding what ``inventories`` say.

    A blob is left out only when every device holds it with the signed
    length. Refuses (exit 2) to build for a device that has already accepted
    this release name at this sequence or later: it would refuse the bundle.
    """
    if not inventories:
        raise UsageError("a delta needs at least one --delta-from inventory")
    for inv in inventories:
        accepted = inv.sequences.get(release.name, 0)
        if accepted >= release.sequence:
            raise UsageError(
                f"device {inv.device_id} ({inv.path}) has accepted {release.name} sequence "
                f"{accepted}; it would refuse sequence {release.sequence}: raise 'sequence' "
                "in the spec")
    expects = []
    for path, info in sorted(release.files.items()):
        if not path.startswith(BLOB_PREFIX):
            continue
        digest = "sha256:" + path[len(BLOB_PREFIX):]
        held = release.stored_digest(digest)  # an encrypted blob is held as its plaintext
        if all(inv.blobs.get(held) == info.length for inv in inventories):
            expects.append(digest)
    base = min(inv.sequences.get(release.name, 0) for inv in inventories)
    return Delta(base, tuple(expects), tuple(inv.ref() for inv in inventories))


def inventory_text(d: dict[str, Any]) -> str:
    """``airlock inventory show``'s result as text for people (the command line prints it)."""
    inv = d["inventory"]
    size = sum(b["size"] for b in inv["blobs"])
    how = (
        "the key embedded in the file (pass --device-key to pin the device's key)"
        if d["verified_with"] == "embedded key"
        else "device key " + ", ".join(d["verified_with"])
    )
    lines = [
        f"inventory of {inv['device_id']}"
        + (f" (ring {inv['ring']})" if inv.get("ring") else "")
        + f", written {inv['time']}",
        f"signature OK by key {d['keyid'][:16]}…, checked against {how}",
        f"active {inv.get('active') or 'none'}, previous {inv.get('previous') or 'none'}",
    ]
    for r in inv.get("releases", []):
        lines.append(
            f"  release {r['id']}: "
            + (r["error"] if "error" in r else
               f"{r['name']} {r['version']} (sequence {r['sequence']}), "
               f"{len(r.get('models', []))} model(s), {len(r.get('images', []))} image(s)")
        )
    lines.append(
        "accepted: "
        + (", ".join(f"{k} up to {v}" for k, v in sorted(inv["sequences"].items()))
           or "nothing yet")
    )
    lines.append(f"store: {len(inv['blobs'])} blobs, {human_size(size)}")
    return "\n".join(lines)
