"""The content store: every blob once, by sha256, shared by all releases.

A blob enters the store only after it has been hashed and matched its signed
digest: it is written to ``staging/`` and fsynced, and renamed into
``blobs/sha256/<hex>`` once the whole bundle has been read and checked, so a
file in the store is always whole and correct and a rejected bundle leaves
the store as it was.
Releases reference blobs through hard links, which cost no space::

    store = ContentStore(layout)
    if not store.has(member.digest):
        staged[member.digest] = store.stage(member)   # member: airlock.format.bundle.BundleFile
    store.commit(staged)           # after the last member was read and checked
    store.link(digest, release_dir / "models" / "detector" / "model.onnx")
    store.gc(keep={...})           # delete blobs no kept release uses
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from agent.faults import crash_point
from agent.layout import Layout, is_real_dir
from airlock.files import fsync_dir
from airlock.format.bundle import BundleFile
from airlock.format.ocicrypt import DecryptStream
from airlock.limits import WRITEBACK_BYTES

__all__ = ["ContentStore"]


class ContentStore:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def path(self, digest: str) -> Path:
        return self.layout.blob(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def stage(self, member: BundleFile, progress: Callable[[int], None] | None = None,
              decrypt: DecryptStream | None = None, as_digest: str | None = None) -> Path:
        """Stream ``member`` into ``staging/``; the file it names is verified and fsynced
        once the reader's loop has settled the member (``BundleReader.files``).

        ``BundleFile.deliver`` hashes as it writes and fails the member if the
        bytes differ from the signed digest; a reader of a regular file does
        this on a background thread, with the fsync, while it reads on. A file
        that failed is deleted on the way out; so does ``drop_staged`` for
        those the loop did not settle.

        With ``decrypt`` (an encrypted blob, ``agent.decrypt``) the verified
        ciphertext is decrypted as it streams and the plaintext staged as
        ``as_digest``; its HMAC and plaintext digest are checked at the end,
        before the blob counts.
        """
        tmp = self.layout.staged_blob(as_digest or member.digest)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        first = True
        flusher = _Writeback(fd)

        def write(chunk: memoryview | bytes) -> None:
            nonlocal first
            if decrypt is not None:
                chunk = memoryview(decrypt.update(chunk))
            n = len(chunk)
            while chunk:
                chunk = chunk[os.write(fd, chunk):]
            if first:
                crash_point("mid-blob")
                first = False
            flusher.wrote(n)

        def finish(error: BaseException | None) -> None:
            kept = False
            try:
                flusher.join()
                if error is None:
                    flusher.raise_error()
                    if decrypt is not None:
                        decrypt.finish()
                    os.fsync(fd)  # durable before commit() renames it into the store
                    kept = True
            finally:
                if decrypt is not None:
                    decrypt.close()
                os.close(fd)
                if not kept:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()

        member.deliver(write, progress, finish)
        return tmp

    def commit(self, staged: dict[str, Path]) -> None:
        """Move verified staged blobs (digest -> file) into the store."""
        for digest, path in staged.items():
            os.rename(path, self.path(digest))
            crash_point("after-blob-stored")
        if staged:
            fsync_dir(self.layout.blobs)

    def link(self, digest: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(self.path(digest), dest)

    def digests(self) -> list[str]:
        return sorted(f"sha256:{p.name}" for p in self.layout.blobs.iterdir()
                      if len(p.name) == 64)

    def usage(self) -> tuple[int, int]:
        """(number of blobs, bytes) in the store; (0, 0) when it is not a real directory."""
        count = size = 0
        if not is_real_dir(self.layout.blobs):
            return count, size
        for entry in os.scandir(self.layout.blobs):
            if entry.is_file(follow_symlinks=False):
                count += 1
                size += entry.stat(follow_symlinks=False).st_size
        return count, size

    def gc(self, keep: Iterable[str]) -> tuple[int, int]:
        """Delete every blob not in ``keep``; returns (blobs, bytes) freed."""
        wanted = set(keep)
        count = size = 0
        for digest in self.digests():
            if digest in wanted:
                continue
            path = self.path(digest)
            size += path.stat().st_size
            path.unlink()
            count += 1
            crash_point("gc-mid-delete")
        if count:
            fsync_dir(self.layout.blobs)
        return count, size


class _Writeback:
    """Flushes a file being written on a thread of its own, ``WRITEBACK_BYTES`` at a time.

    The disk then writes a blob while it is still being hashed, and the fsync
    that makes it durable waits only for the tail. A flush's error is kept
    for that fsync: the kernel reports a writeback error to an open file once.
    """

    def __init__(self, fd: int) -> None:
        self.fd, self.unflushed = fd, 0
        self.thread: threading.Thread | None = None
        self.error: OSError | None = None

    def wrote(self, n: int) -> None:
        self.unflushed += n
        if self.unflushed >= WRITEBACK_BYTES and not (self.thread and self.thread.is_alive()):
            self.unflushed = 0
            self.thread = threading.Thread(target=self._flush, name="airlock-writeback",
                                           daemon=True)
            self.thread.start()

    def _flush(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as e:
            self.error = self.error or e

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error
