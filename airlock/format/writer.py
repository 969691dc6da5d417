"""The one writer of a bundle: reproducible, every source checked as it is copied.

Members have fixed owners, modes and mtimes, and a fixed order (metadata
first, in its padded slot, then ``oci-layout``, ``index.json`` and the blobs,
smallest first), so the same inputs and keys give the same bytes::

    files = [SourceFile("blobs/sha256/" + hex, size, hex, lambda: open(p, "rb"), stamp), ...]
    with open("vision-1.2.0.airlock", "wb") as out:
        write_bundle(out, release_json, files, progress=bar.update)

A source still carrying the :class:`FileStamp` it had when its caller hashed
it is copied unhashed (in the kernel when it can); any other is hashed as it
is copied, and a mismatch aborts the build.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, BinaryIO

from airlock.errors import DigestError, FormatError
from airlock.format.slot import RELEASE_PATH, ROOT_PATH, metadata_slot
from airlock.limits import CHUNK

__all__ = ["FileStamp", "SourceFile", "member_header", "starts_like_bundle", "write_bundle"]

_FIXED_MTIME = 0


def member_header(name: str, size: int) -> bytes:
    """The tar header :func:`write_bundle` writes for a member (for a copy around a slot)."""
    return _tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@dataclass(frozen=True)
class FileStamp:
    """A file's identity and version as ``stat`` gives them: device, inode, size, mtime.

    Recorded when the file's bytes were hashed, it lets a later reader trust
    those bytes unread while the file still stamps the same (git's index does
    the same). A write moves the mtime (through a shared mapping, at the
    first write after each writeback: the hole git's index has too), so a
    changed file stamps differently; a stamp is recorded only when the mtime
    is older than the clock's granularity at hashing time ("racily clean"
    files are hashed again). ctime is left out on purpose: the host health
    check hard-links cached blobs, and a link moves the ctime of bytes that
    did not change.
    """

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class SourceFile:
    """One file to place in the bundle's OCI layout, with its known digest.

    ``stamp`` is the file's :class:`FileStamp` when the caller hashed these
    very bytes itself: while the opened file still stamps the same, before
    and after the copy, it is copied without being hashed again (by the
    kernel where it can). Without a stamp, or when the stamp moved, the
    bytes are hashed as they are copied.
    """

    path: str  # "oci-layout", "index.json" or "blobs/sha256/<hex>"
    size: int
    sha256: str
    open: Callable[[], IO[bytes]]
    stamp: FileStamp | None = None


class _HashingReader:
    """Reads from ``src`` while hashing and reporting progress."""

    def __init__(self, src: IO[bytes], progress: Callable[[int], None] | None) -> None:
        self.src, self.progress, self.hash = src, progress, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.hash.update(data)
        if self.progress and data:
            self.progress(len(data))
        return data


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, _FIXED_MTIME, 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def write_bundle(
    out: BinaryIO,
    release_json: bytes,
    files: Sequence[SourceFile],
    *,
    root_json: bytes | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write a bundle to a seekable binary file; every source is checked as it is copied.

    A source is hashed as it is copied, unless it still has the ``stamp`` it
    had when its caller hashed it (then it is copied unhashed, in the kernel
    when ``out`` is a file). A source whose bytes differ from its declared
    digest, or whose stamp moves during the copy (a file that changed during
    the build), aborts with a DigestError rather than making a bundle whose
    signature lies.
    """
    order = {"oci-layout": 0, "index.json": 1}
    ordered = sorted(files, key=lambda f: (order.get(f.path, 2), f.size, f.path))
    paths = [f.path for f in ordered]
    if len(set(paths)) != len(paths):
        raise FormatError("the same file was added to a bundle twice")
    with tarfile.open(  # type: ignore[call-overload]
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK
    ) as tar:
        if root_json is not None:
            tar.addfile(_tarinfo(ROOT_PATH, len(root_json)), io.BytesIO(root_json))
        slot = metadata_slot(release_json)
        tar.addfile(_tarinfo(RELEASE_PATH, len(slot)), io.BytesIO(slot))
        for f in ordered:
            with f.open() as src:
                if f.stamp is not None and _stamp_of(src) == f.stamp:
                    _add_stamped(tar, out, f, src, progress)
                    continue
                reader = _HashingReader(src, progress)
                tar.addfile(_tarinfo(f.path, f.size), reader)  # type: ignore[arg-type]
            if reader.hash.hexdigest() != f.sha256:
                raise DigestError(f"{f.path} changed while the bundle was written; build again")


def _stamp_of(src: IO[bytes]) -> FileStamp | None:
    try:
        return FileStamp.of(os.fstat(src.fileno()))
    except (OSError, ValueError):  # not a file (io.UnsupportedOperation is both)
        return None


# Kernel copies go in steps this large so progress still moves on a big blob.
_COPY_STEP = 64 * CHUNK
# copy_file_range refuses these for a pair of files it cannot copy between
# (another filesystem on old kernels, a filesystem without support): copy in Python.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def _add_stamped(tar: tarfile.TarFile, out: BinaryIO, f: SourceFile, src: IO[bytes],
                 progress: Callable[[int], None] | None) -> None:
    """Write ``f`` as ``tar.addfile`` would, its bytes unhashed: the caller hashed them.

    Same header, data and padding, so the bundle is byte for byte what the
    hashing path writes. The stamp is checked again after the copy: a file
    written to meanwhile fails the build as a digest mismatch would.
    """
    header = _tarinfo(f.path, f.size).tobuf(tar.format, tar.encoding, tar.errors)
    out.write(header)
    copied = _copy_bytes(src, out, f.size, progress)
    if copied != f.size or _stamp_of(src) != f.stamp:
        raise DigestError(f"{f.path} changed while the bundle was written; build again")
    pad = -f.size % tarfile.BLOCKSIZE
    out.write(b"\0" * pad)
    tar.offset += len(header) + f.size + pad  # where tarfile's own close() pads from


def _copy_bytes(src: IO[bytes], out: BinaryIO, size: int,
                progress: Callable[[int], None] | None) -> int:
    """Copy ``size`` bytes from the start of ``src``: in the kernel when both are files."""
    done = 0
    try:
        dst_fd, src_fd = out.fileno(), src.fileno()
    except (OSError, ValueError):  # a part writer, a memory file: no descriptor
        dst_fd = src_fd = -1
    if dst_fd >= 0 and hasattr(os, "copy_file_range"):
        out.flush()
        at = out.tell()
        try:
            while done < size:
                n = os.copy_file_range(src_fd, dst_fd, min(_COPY_STEP, size - done), done,
                                       at + done)
                if n == 0:  # the file is shorter than when it was hashed
                    out.seek(at + done)
                    return done
                done += n
                if progress:
                    progress(n)
        except OSError as e:
            if e.errno not in _NO_KERNEL_COPY:
                raise
        out.seek(at + done)
        if done == size:
            return done
    src.seek(done)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while done < size:
        n = src.readinto(view[: min(CHUNK, size - done)])  # type: ignore[attr-defined]
        if not n:
            break
        out.write(view[:n])
        done += n
        if progress:
            progress(n)
    return done


def starts_like_bundle(head: bytes) -> bool:
    """Whether ``head``, a file's first 512 bytes, is the tar header :func:`write_bundle`
    writes first (Airlock's metadata). Cheap and bounded: it tells a bundle about to be
    rebuilt from a file that a mistyped ``-o`` would destroy; it checks nothing else."""
    try:
        first = tarfile.TarInfo.frombuf(head, "utf-8", "strict")
    except (tarfile.HeaderError, UnicodeError, ValueError):
        return False
    return first.name in (ROOT_PATH, RELEASE_PATH) and first.isreg()
