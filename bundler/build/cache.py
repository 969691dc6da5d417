"""The host-side pull cache: registry blobs by digest, so a rebuild re-downloads nothing.

Content-addressed like an OCI layout (``ROOT/blobs/sha256/<hex>``), default
``~/.cache/airlock`` (``$XDG_CACHE_HOME/airlock``; ``airlock build --cache DIR``)::

    cache = BlobCache(None)
    path = cache.fetch("sha256:…", 1234, lambda dest: client.download_blob(ref, d, 1234, dest))
    cache.verified["sha256:…"]          # its FileStamp: the bundle writer copies it unhashed
    print(cache.hits, cache.downloaded_bytes)

A file lands in the cache only after its digest and size were verified
(``RegistryClient.download_blob`` writes a temp file and renames it). A hit
costs what a local file costs, not a hash: like git's index, the cache
records each entry's :class:`~airlock.format.writer.FileStamp` (device, inode, size,
mtime) when it was verified, in ``ROOT/verified/sha256/<hex>``, and trusts an
entry that still stamps the same. Any write moves the mtime, so an entry
changed on disk stamps differently: it is hashed again, and if damaged
dropped and downloaded afresh, so a bad cache heals itself instead of
failing every build. A record is trusted only when the entry's mtime is
older than the record's own (written later, on the same filesystem and
clock): an entry changed in the same clock tick as it was recorded
("racily clean") is hashed again. A blob verified once in a build is not
verified again in it (a layer shared by two images). Manifests are not
cached: a tag may move, so they are asked for on every build (a few hundred
bytes each). Several builds may share a cache: writes are atomic renames.
Delete the directory to empty it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from airlock.format.oci import digest_hex
from airlock.format.writer import FileStamp
from bundler.build.artifacts import hash_stamped

__all__ = ["BlobCache", "default_cache_dir"]

# A record is four integers; anything longer is not one of ours.
_RECORD_BYTES = 512


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "airlock"


class BlobCache:
    def __init__(self, root: Path | None) -> None:
        self.root = root if root is not None else default_cache_dir()
        self.hits = 0
        self.downloaded_bytes = 0
        self.hashed_bytes = 0  # of hits whose record did not vouch for them
        #: digest -> the stamp its entry had when verified in this build
        self.verified: dict[str, FileStamp] = {}

    def path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest_hex(digest)

    def _record_path(self, digest: str) -> Path:
        return self.root / "verified" / "sha256" / digest_hex(digest)

    def has(self, digest: str, size: int) -> bool:
        try:
            return self.path(digest).stat().st_size == size
        except FileNotFoundError:
            return False

    def fetch(self, digest: str, size: int, download: Callable[[Path], None]) -> Path:
        """The cached file of ``digest``; calls ``download(dest)`` on a miss."""
        dest = self.path(digest)
        try:
            now = FileStamp.of(dest.stat())
        except FileNotFoundError:
            now = None
        if now is not None and now.size == size:
            if self.verified.get(digest) == now or self._recorded(digest) == now:
                self.verified[digest] = now
                self.hits += 1
                return dest
            hexdigest, _, stamp = hash_stamped(dest)
            self.hashed_bytes += size
            if "sha256:" + hexdigest == digest:
                self._verified(digest, stamp)
                self.hits += 1
                return dest
            dest.unlink(missing_ok=True)  # damaged on disk: fetch it again
        dest.parent.mkdir(parents=True, exist_ok=True)
        download(dest)
        self.downloaded_bytes += size
        # download_blob verified these bytes as they arrived and renamed them into place.
        with contextlib.suppress(OSError):
            self._verified(digest, FileStamp.of(dest.stat()))
        return dest

    def _verified(self, digest: str, stamp: FileStamp | None) -> None:
        """Remember that ``digest``'s entry, as ``stamp`` says it is, holds the right bytes."""
        if stamp is None:  # changed while hashed, or too fresh to tie to its bytes
            return
        self.verified[digest] = stamp
        record = self._record_path(digest)
        tmp = record.with_name(f".{record.name}.{secrets.token_hex(4)}.tmp")
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"dev": stamp.dev, "ino": stamp.ino, "size": stamp.size,
                                       "mtime_ns": stamp.mtime_ns}))
            os.replace(tmp, record)
        except OSError:  # a read-only cache still serves; its hits are hashed
            tmp.unlink(missing_ok=True)

    def _recorded(self, digest: str) -> FileStamp | None:
        """The stamp recorded when the entry was verified, if it can still be trusted."""
        try:
            with self._record_path(digest).open("rb") as f:
                written = os.fstat(f.fileno()).st_mtime_ns
                doc = json.loads(f.read(_RECORD_BYTES))
            stamp = FileStamp(int(doc["dev"]), int(doc["ino"]), int(doc["size"]),
                              int(doc["mtime_ns"]))
        except (OSError, ValueError, TypeError, KeyError):
            return None
        # Racily clean: an entry written in the record's clock tick could change unseen.
        return stamp if stamp.mtime_ns < written else None
