"""The host-side pull cache: registry blobs by digest, so a rebuild re-downloads nothing.

Content-addressed like an OCI layout (``ROOT/blobs/sha256/<hex>``), default
``~/.cache/airlock`` (``$XDG_CACHE_HOME/airlock``; ``airlock build --cache DIR``)::

    cache = BlobCache(None)
    path = cache.fetch("sha256:…", 1234, lambda dest: client.download_blob(ref, d, 1234, dest))
    print(cache.hits, cache.downloaded_bytes)

A file lands in the cache only after its digest and size were verified
(``RegistryClient.download_blob`` writes a temp file and renames it). A hit
is hashed again before use, and an entry damaged on disk is dropped and
downloaded afresh, so a bad cache heals itself instead of failing every
build (the build hashes every blob once more while writing the bundle). Manifests are not cached: a tag may move, so they are asked for
on every build (a few hundred bytes each). Several builds may share a cache:
writes are atomic renames. Delete the directory to empty it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from airlock.oci import digest_hex, hash_file

__all__ = ["BlobCache", "default_cache_dir"]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "airlock"


class BlobCache:
    def __init__(self, root: Path | None) -> None:
        self.root = root if root is not None else default_cache_dir()
        self.hits = 0
        self.downloaded_bytes = 0

    def path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest_hex(digest)

    def has(self, digest: str, size: int) -> bool:
        try:
            return self.path(digest).stat().st_size == size
        except FileNotFoundError:
            return False

    def fetch(self, digest: str, size: int, download: Callable[[Path], None]) -> Path:
        """The cached file of ``digest``; calls ``download(dest)`` on a miss."""
        dest = self.path(digest)
        if self.has(digest, size):
            if "sha256:" + hash_file(dest)[0] == digest:
                self.hits += 1
                return dest
            dest.unlink(missing_ok=True)  # damaged on disk: fetch it again
        dest.parent.mkdir(parents=True, exist_ok=True)
        download(dest)
        self.downloaded_bytes += size
        return dest
