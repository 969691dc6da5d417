"""``airlock serve``'s content: bundles verified at start, their blobs kept for the relay.

Each bundle (one file, or every ``*.airlock`` in a directory) is read once with
the one reader (``airlock.format.bundle``), its signatures verified against the
trust root as a device would (any ring), every blob hashed as it is copied into
``scratch/`` and kept only once it matched. What is served afterwards is only
what passed (``airlock.relay``)::

    held = load_bundles([Path("site-1.airlock")], trust, scratch)
    catalog = Catalog(held, blob_file=lambda hex_: scratch / hex_)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from airlock.errors import UsageError
from airlock.format.bundle import BundleReader
from airlock.format.oci import BLOB_PREFIX, digest_hex
from airlock.relay.catalog import HeldRelease
from keys.trust import TrustRoot

__all__ = ["bundles_in", "load_bundles"]


def bundles_in(where: Path) -> list[Path]:
    """``where`` itself, or the ``*.airlock`` files in the directory ``where``."""
    if where.is_dir():
        found = sorted(p for p in where.glob("*.airlock") if p.is_file())
        if not found:
            raise UsageError(f"{where} holds no *.airlock bundle")
        return found
    if not where.is_file():
        raise UsageError(f"{where} is not a bundle or a directory of bundles")
    return [where]


def load_bundles(paths: list[Path], trust: TrustRoot, scratch: Path,
                 progress: Callable[[int], None] | None = None) -> list[HeldRelease]:
    """Verify each bundle whole; its blobs land in ``scratch`` (named by sha256 hex)."""
    held = []
    for path in paths:
        with open(path, "rb") as f:
            reader = BundleReader(f)
            head = reader.head()
            _, verified = trust.verify_head(head.release_json, head.root_json, any_ring=True)
            release = verified.release
            meta: dict[str, bytes] = {}
            expects = release.delta.expects if release.delta else ()
            with contextlib.closing(reader.files(release.files, expects,)) as members:
                for member in members:
                    if not member.path.startswith(BLOB_PREFIX):
                        meta[member.path] = member.read_all()
                        continue
                    dest = scratch / digest_hex(member.digest)
                    if dest.exists():
                        member.verify(progress)
                        continue
                    partial = scratch / f".{dest.name}.partial"
                    try:
                        with open(partial, "wb") as out:
                            member.copy_to(out, progress)  # hashed as it goes; raises on mismatch
                        os.rename(partial, dest)
                    finally:
                        with contextlib.suppress(FileNotFoundError):
                            partial.unlink()
        files = {p: (i.length, i.sha256) for p, i in release.shipped.items()}
        held.append(HeldRelease(release.id, head.release_json, meta.get("index.json"), files))
    return held
