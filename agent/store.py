"""The content store: every blob once, by sha256, shared by all releases.

A blob enters the store only after it has been hashed and matched its signed
digest: it is written to ``staging/``, fsynced, then renamed into
``blobs/sha256/<hex>``, so a file in the store is always whole and correct.
Releases reference blobs through hard links, which cost no space::

    store = ContentStore(layout)
    if not store.has(member.digest):
        store.put(member)          # member: keys.bundle_format.BundleFile
    store.link(digest, release_dir / "models" / "detector" / "model.onnx")
    store.gc(keep={...})           # delete blobs no kept release uses
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from agent.durable import fsync_dir
from agent.faults import crash_point
from agent.layout import Layout
from keys.bundle_format import BundleFile

__all__ = ["ContentStore"]


class ContentStore:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def path(self, digest: str) -> Path:
        return self.layout.blob(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, member: BundleFile, progress: Callable[[int], None] | None = None) -> int:
        """Stream ``member`` into the store; returns bytes written.

        ``BundleFile.chunks`` hashes as it reads and raises DigestError after
        the last chunk if the bytes differ from the signed digest, so the
        staged file is renamed into the store only when it matched.
        """
        dest = self.path(member.digest)
        tmp = self.layout.staging / f"blob-{dest.name}.part"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        written = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                for chunk in member.chunks(progress):
                    out.write(chunk)
                    if written == 0:
                        out.flush()
                        crash_point("mid-blob")
                    written += len(chunk)
                out.flush()
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        os.close(fd)
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
        crash_point("after-blob-stored")
        return written

    def link(self, digest: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(self.path(digest), dest)

    def digests(self) -> list[str]:
        return sorted(f"sha256:{p.name}" for p in self.layout.blobs.iterdir()
                      if len(p.name) == 64)

    def usage(self) -> tuple[int, int]:
        """(number of blobs, bytes) in the store."""
        count = size = 0
        for p in self.layout.blobs.iterdir():
            count += 1
            size += p.stat().st_size
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
