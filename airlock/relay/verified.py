"""A blob is served only while its file is the one that matched its digest.

The first time a relay serves a blob it hashes the whole file; the file's
:class:`~airlock.format.writer.FileStamp` (device, inode, size, mtime) is then
remembered, as git's index does, and later requests (a ``Range`` one too) are
served without hashing again while the file still stamps the same. A file
that changed, or failed its check, is not served (``None``)::

    blobs = VerifiedBlobs(lambda hex_: store / hex_)
    opened = blobs.open(hex_)        # a file object positioned at 0, or None
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from airlock.format.writer import FileStamp
from airlock.limits import CHUNK

__all__ = ["VerifiedBlobs"]


class VerifiedBlobs:
    def __init__(self, blob_file: Callable[[str], Path | None]) -> None:
        self._blob_file = blob_file
        self._stamps: dict[str, FileStamp] = {}
        self._lock = threading.Lock()
        self._hashing: dict[str, threading.Lock] = {}  # one hash per blob at a time

    def open(self, hex_: str) -> IO[bytes] | None:
        """The blob's file, opened, when its bytes matched ``hex_``; else None."""
        path = self._blob_file(hex_)
        if path is None:
            return None
        try:
            f = open(path, "rb")  # noqa: SIM115 - handed to the caller
        except OSError:
            return None
        try:
            if self._matches(hex_, f):
                return f
        except OSError:
            pass
        f.close()
        return None

    def _matches(self, hex_: str, f: IO[bytes]) -> bool:
        stamp = FileStamp.of(os.fstat(f.fileno()))
        with self._lock:
            if self._stamps.get(hex_) == stamp:
                return True
            gate = self._hashing.setdefault(hex_, threading.Lock())
        with gate:
            with self._lock:
                if self._stamps.get(hex_) == stamp:
                    return True
            h = hashlib.sha256()
            while chunk := f.read(CHUNK):
                h.update(chunk)
            f.seek(0)
            ok = h.hexdigest() == hex_ and FileStamp.of(os.fstat(f.fileno())) == stamp
            with self._lock:
                if ok:
                    self._stamps[hex_] = stamp
                else:
                    with contextlib.suppress(KeyError):
                        del self._stamps[hex_]
            return ok
