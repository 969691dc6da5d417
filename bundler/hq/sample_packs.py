"""Sample packs at headquarters: a device's signed pack checked whole, then stored.

``airlock-agent samples export`` writes a folder of sample files and
``samples.manifest.json`` (a DSSE envelope signed with the device key). At
headquarters ``airlock report ingest`` recognises such a folder and takes it
in here::

    stored = ingest_pack(fleet, Path("/media/usb/cam-7.samples"))
    stored.device_id, stored.files, stored.stored    # "cam-7", 12, "fleet/samples/cam-7/2026…"

The manifest must verify against the key enrolled for the device it names,
and every file it lists must be there with its size and sha256; otherwise the
pack is refused whole (one line, exit 3) and nothing is stored. Storage is
one small function, :func:`store_pack` (today a folder of the fleet
directory; a ledger database can take its place)::

    FLEET/samples/DEVICE/TIME/samples.manifest.json   the signed manifest, as it came
    FLEET/samples/DEVICE/TIME/MODEL/FILE.npz          each sample file
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airlock.errors import AirlockError, FormatError, SignatureError
from airlock.files import MediumError, open_dir_on_medium, read_on_medium
from airlock.limits import MAX_DEVICE_DOCUMENT_BYTES, MAX_DRIFT_FILE_BYTES
from bundler.build.output import replace_file
from bundler.hq.ingest import FleetRecords, parse_time
from keys.device import SAMPLES_TYPE, verify_document
from keys.release import is_plain_name

__all__ = ["MANIFEST", "PackIngested", "PackTarget", "ingest_pack", "is_pack", "store_pack"]


@dataclass(frozen=True)
class PackTarget:
    """Where packs are kept (the fleet directory) and who is enrolled (the ledger's devices)."""

    root: Path
    devices: Callable[[], dict[str, dict[str, Any]]]

MANIFEST = "samples.manifest.json"


@dataclass
class PackIngested:
    """One sample pack taken in, or refused (``reason`` set)."""

    file: str
    device_id: str | None = None
    files: int = 0
    bytes: int = 0
    reason: str | None = None
    stored: str | None = None


def is_pack(path: Path) -> bool:
    """A folder holding a sample-pack manifest."""
    return path.is_dir() and (path / MANIFEST).is_file()


def store_pack(fleet: Path, device: str, stamp: str, manifest: bytes,
               files: dict[str, bytes]) -> Path:
    """Keep a verified pack at headquarters; where it went. The one place that knows how."""
    folder = fleet / "samples" / device / stamp
    for rel, data in files.items():
        replace_file(folder / rel, data)
    replace_file(folder / MANIFEST, manifest)  # last: a folder with a manifest is whole
    return folder


def ingest_pack(fleet: PackTarget | FleetRecords, folder: Path) -> PackIngested:
    """Verify one pack against its device's enrolled key and every file's digest; store it."""
    item = PackIngested(str(folder))
    try:
        data = read_on_medium(folder, MANIFEST, MAX_DEVICE_DOCUMENT_BYTES)
        body, device = _verified(fleet, data)
        files = _files(folder, body)
    except MediumError as e:
        item.reason = f"not read: {e}"
        return item
    except OSError as e:
        item.reason = f"cannot read: {e.strerror}"
        return item
    except AirlockError as e:
        item.reason = str(e)
        return item
    when = parse_time(body.get("time")) or datetime.now(timezone.utc)
    item.device_id, item.files = device, len(files)
    item.bytes = sum(len(d) for d in files.values())
    item.stored = str(store_pack(fleet.root, device, when.strftime("%Y%m%dT%H%M%SZ"), data,
                                 files))
    return item


def _verified(fleet: PackTarget | FleetRecords, data: bytes) -> tuple[dict[str, Any], str]:
    doc = verify_document(data, SAMPLES_TYPE)
    claimed = doc.body.get("device_id")
    devices = fleet.devices()
    if not isinstance(claimed, str) or claimed not in devices:
        raise SignatureError(f"sample pack from device {str(claimed)[:64]!r}, which is not "
                             "enrolled; run 'airlock report enroll DEVICE.pub --device-id ID' "
                             "first")
    entry = devices[claimed]
    key = entry.get("key") if isinstance(entry, dict) else None
    if not isinstance(key, dict) or key.get("keyid") != doc.keyid:
        raise SignatureError(f"sample pack claims to come from {claimed} but is signed by key "
                             f"{doc.keyid[:16]}…, not its enrolled key (forged)")
    from securesystemslib.signer import Key

    pub = dict(key)
    enrolled = Key.from_dict(str(pub.pop("keyid")), pub)
    return verify_document(data, SAMPLES_TYPE, key=enrolled).body, claimed


def _files(folder: Path, body: dict[str, Any]) -> dict[str, bytes]:
    """Every listed file, read and matched with its size and sha256."""
    listed = body.get("files")
    if not isinstance(listed, list):
        raise FormatError("sample-pack manifest lists no files")
    out: dict[str, bytes] = {}
    for f in listed:
        model, name = (f.get("model"), f.get("file")) if isinstance(f, dict) else (None, None)
        if not (is_plain_name(model) and is_plain_name(name)):
            raise FormatError(f"sample-pack manifest names a file oddly: {str(f)[:120]}")
        assert isinstance(model, str) and isinstance(name, str)
        fd = open_dir_on_medium(folder, model)
        try:
            data = read_on_medium(fd, name, MAX_DRIFT_FILE_BYTES)
        finally:
            import os

            os.close(fd)
        if len(data) != f.get("size") or hashlib.sha256(data).hexdigest() != f.get("sha256"):
            raise SignatureError(f"{model}/{name} is not the file the signed manifest lists "
                                 "(altered after export)")
        out[f"{model}/{name}"] = data
    return out
