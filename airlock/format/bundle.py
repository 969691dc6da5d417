"""The bundle format: the one reader and the one writer, shared by both sides.

A bundle is one uncompressed POSIX (pax) tar::

    airlock/root.json      optional: a rotated trust root, signed by the old one
    airlock/release.json   signed release metadata (a keys.release.Release)
    oci-layout             \\
    index.json              > a standard OCI image layout
    blobs/sha256/<hex>     /  small blobs first, then layers and models

Metadata comes first so a reader checks signatures before it reads any blob.
Writing is reproducible: members have fixed owners, modes and mtimes, and a
fixed order, so the same inputs and keys give the same bytes.

**The metadata slot.** ``airlock/release.json`` is written into a padded
slot: the JSON document, then spaces and one newline (JSON whitespace, which
every JSON reader skips) up to a whole number of tar blocks with at least
``SLOT_SPARE`` bytes to spare. A signature added after the build (``airlock
sign``) rewrites only the slot's bytes, so the tar header (whose size field
would change) and every blob after it stay byte for byte where they were::

    slot = metadata_slot(release_json)          # padded: len(slot) % 512 == 0
    head = BundleReader(f).head()               # head.release_json: padding stripped
    head.slot_offset, head.slot_size            # where the slot's bytes are in the archive
    fitted = metadata_slot(new_json, head.slot_size)   # same size, or SlotFullError

The slot's size depends only on the JSON's length, so builds stay
reproducible; a bundle written before the slot existed is a slot with no
spare room. ``bundler.signing.slot_rewrite`` rewrites a slot in place (crash-safe)
or copies the bundle around a bigger one. A writer that learns the metadata
only after the blobs (one pass) can reserve a slot of a size it chooses and
fill it last.

Reading is one forward pass that works from a pipe::

    reader = BundleReader(stream)
    head = reader.head()                      # metadata only; nothing else read yet
    trust, verified = root.verify_head(head.release_json, head.root_json)  # keys decides
    for member in reader.files(verified.release.files):
        member.copy_to(out)                   # hashes while copying; raises on mismatch

From a regular file, ``member.verify()`` and ``member.deliver(write)`` hand
the blob to one of ``HASH_THREADS`` threads (positioned reads, so they share
no file offset) and return; the loop settles them in archive order, raising
the first bad member's error before anything found further on, and ends only
when every one has matched. A blob of ``PIPELINE_MIN_BYTES`` or more is
hashed on a thread beside the one that reads (and writes) it, over
``PIPELINE_BUFFERS`` fixed chunks: both cores work and memory stays flat.

The reader refuses, with a :class:`~airlock.errors.FormatError` naming the
member: any non-regular member (links, devices, directories, sparse files),
absolute or ``..`` paths, duplicates, unlisted members, wrong lengths or
digests, truncation, missing files, and an OCI layout that names content the
bundle does not carry. Before any of that, tar extended headers are bounded
in size, in a row and in total (``airlock.limits``), since tarfile parses them
before the member they describe. It decides nothing about trust:
``keys.trust`` does.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import posixpath
import queue
import stat
import tarfile
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import IO, Any, BinaryIO, Protocol, cast

from airlock.errors import DigestError, FormatError, RejectedError
from airlock.format.oci import BLOB_PREFIX, INDEX_TYPES
from airlock.limits import (
    CHUNK,
    HASH_JOBS_IN_FLIGHT,
    HASH_THREADS,
    MAX_EXTENDED_HEADER_BYTES,
    MAX_EXTENDED_HEADER_TOTAL_BYTES,
    MAX_EXTENDED_HEADERS_PER_MEMBER,
    MAX_LAYOUT_DOC_BYTES,
    MAX_METADATA_BYTES,
    PIPELINE_BUFFERS,
    PIPELINE_MIN_BYTES,
)

__all__ = [
    "RELEASE_PATH",
    "ROOT_PATH",
    "SLOT_BLOCK",
    "SLOT_SPARE",
    "BundleFile",
    "BundleHead",
    "BundleReader",
    "FileInfo",
    "FileStamp",
    "LayoutCheck",
    "ShortFrontError",
    "SlotFullError",
    "SourceFile",
    "member_header",
    "metadata_slot",
    "starts_like_bundle",
    "write_bundle",
]

ROOT_PATH = "airlock/root.json"
RELEASE_PATH = "airlock/release.json"
_FIXED_MTIME = 0

#: A tar block: the slot ends on one, so its member needs no tar padding.
SLOT_BLOCK = 512
#: Room a slot keeps beyond its JSON for signatures added after the build:
#: about 30 Ed25519 or ECDSA signatures, or 7 RSA-4096 ones (a KMS key).
SLOT_SPARE = 8 * 1024
_JSON_SPACE = b" \t\r\n"


class SlotFullError(FormatError):
    """New metadata does not fit the bundle's metadata slot; the bundle must be copied."""


class ShortFrontError(FormatError):
    """The archive ends inside the metadata at its front: a copy cut short, or still going.

    ``needed`` is the least size the archive has (through that member, and
    the end blocks): a drop folder waits for it. The metadata slot makes the
    front several KiB, so half a copied bundle can end there.
    """

    def __init__(self, message: str, needed: int) -> None:
        super().__init__(message)
        self.needed = needed


def metadata_slot(release_json: bytes, size: int | None = None) -> bytes:
    """``release_json`` padded to a slot: spaces and a final newline, ``size`` bytes in all.

    ``size=None`` chooses the build's size: the JSON, ``SLOT_SPARE`` and the
    newline, rounded up to a whole tar block, but no more than a reader takes
    (``MAX_METADATA_BYTES``) when the JSON fits that. Raises SlotFullError
    when the JSON (and its newline) does not fit ``size``.
    """
    body = release_json.rstrip(_JSON_SPACE)
    if size is None:
        least = -(-(len(body) + 1) // SLOT_BLOCK) * SLOT_BLOCK
        roomy = -(-(len(body) + 1 + SLOT_SPARE) // SLOT_BLOCK) * SLOT_BLOCK
        size = max(least, min(roomy, MAX_METADATA_BYTES))
    if len(body) + 1 > size:
        raise SlotFullError(
            f"the metadata ({len(body)} bytes) no longer fits its {size}-byte slot"
        )
    return body + b" " * (size - len(body) - 1) + b"\n"


def member_header(name: str, size: int) -> bytes:
    """The tar header :func:`write_bundle` writes for a member (for a copy around a slot)."""
    return _tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@dataclass(frozen=True)
class FileInfo:
    """A file of the bundle's OCI layout as the signed metadata lists it."""

    length: int
    sha256: str  # hex


# -- writing -------------------------------------------------------------------


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


# -- reading -------------------------------------------------------------------


class _Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class _Window:
    """At most ``size`` bytes of ``stream`` from its current position."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self.stream, self.left = stream, size

    def readinto(self, buffer: memoryview) -> int:
        n = self.stream.readinto(buffer[: self.left])  # type: ignore[attr-defined]
        self.left -= n or 0
        return int(n or 0)


class _PreadWindow:
    """``size`` bytes of a file descriptor from ``offset``, read with ``preadv``.

    Positioned reads share no file offset, so blobs of one bundle file are
    read by several threads at once while the reader walks the tar headers.
    """

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.at, self.left = fd, offset, size

    def readinto(self, buffer: memoryview) -> int:
        n = os.preadv(self.fd, [buffer[: self.left]], self.at)
        self.at += n
        self.left -= n
        return n


def _hashed_chunks(readinto: Callable[[memoryview], int | None], length: int,
                   stop: threading.Event | None = None) -> Generator[memoryview, None, tuple[int, str]]:
    """Yield up to ``length`` bytes read by ``readinto``; return (bytes read, sha256 hex).

    From ``PIPELINE_MIN_BYTES`` on, a second thread hashes each chunk while
    the next one is read and the caller writes this one (reads, writes and
    hashlib's updates all release the GIL), over ``PIPELINE_BUFFERS`` chunks
    of ``CHUNK`` bytes: memory is flat however large the blob. A yielded view
    stays valid until the next one is asked for.
    """
    h = hashlib.sha256()
    seen = 0
    if length < PIPELINE_MIN_BYTES:
        view = memoryview(bytearray(max(1, min(CHUNK, length))))
        while seen < length:
            n = readinto(view[: min(CHUNK, length - seen)])
            if not n:
                break
            seen += n
            h.update(view[:n])
            yield view[:n]
        return seen, h.hexdigest()
    free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
    todo: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
    for _ in range(PIPELINE_BUFFERS):
        free.put(memoryview(bytearray(CHUNK)))

    def hash_loop() -> None:
        while (item := todo.get()) is not None:
            whole, n = item
            h.update(whole[:n])
            free.put(whole)

    hasher = threading.Thread(target=hash_loop, name="airlock-hash", daemon=True)
    hasher.start()
    try:
        while seen < length:
            if stop is not None and stop.is_set():
                raise _Abandoned
            whole = free.get()
            n = readinto(whole[: min(CHUNK, length - seen)])
            if not n:
                break
            seen += n
            todo.put((whole, n))
            yield whole[:n]
    finally:
        todo.put(None)
        hasher.join()
    return seen, h.hexdigest()


class _Abandoned(Exception):
    """A background read stopped because the loop that started it was left."""


class _Jobs:
    """Blobs of one bundle file hashed (and written) on ``HASH_THREADS`` threads.

    Their verdicts are taken in archive order: the first failing member is
    the one reported, as a one-thread read would report it, and a failure
    the reader finds further on (a bad header, truncation) is raised only
    after every member before it has been settled.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stop = threading.Event()
        self.progress_lock = threading.Lock()  # callbacks one at a time, as from one thread
        self._pool = ThreadPoolExecutor(max_workers=HASH_THREADS,
                                        thread_name_prefix="airlock-blob")
        self._pending: deque[Future[None]] = deque()

    def submit(self, job: Callable[[], None]) -> None:
        while len(self._pending) >= HASH_JOBS_IN_FLIGHT:
            self._settle_oldest()
        self._pending.append(self._pool.submit(job))

    def reap(self) -> None:
        """Raise the error of the oldest finished members, if any failed."""
        while self._pending and self._pending[0].done():
            self._settle_oldest()

    def drain(self) -> None:
        """Wait for every member handed out; raise the first failure in archive order."""
        while self._pending:
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        future = self._pending.popleft()
        try:
            future.result()
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Stop and wait for every member still running: no thread writes after this."""
        self.stop.set()
        while self._pending:
            with contextlib.suppress(BaseException):
                self._pending.popleft().result()

    def close(self) -> None:
        self.abandon()
        self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class BundleHead:
    """The metadata at the front of a bundle, not yet verified."""

    release_json: bytes  # the slot's JSON, padding stripped
    root_json: bytes | None = None
    slot_header: int = 0  # where release.json's tar header (any extended header) starts
    slot_offset: int = 0  # where the metadata slot's bytes start in the archive
    slot_size: int = 0  # the slot's bytes: the JSON and its padding


class BundleFile:
    """One OCI-layout file of a bundle, readable once, checked against its signed entry.

    Reading it (``chunks``, ``copy_to``, ``read_all``) hashes it as it goes.
    When the bundle is a regular file, ``verify`` and ``deliver`` hand it to
    a background thread and return at once; :meth:`BundleReader.files`
    settles each such member in archive order before it yields a later
    failure, and has settled them all when it ends.
    """

    def __init__(self, path: str, info: FileInfo, stream: _Readable, *, keep: bool = False,
                 short: Callable[[str], FormatError] | None = None,
                 jobs: _Jobs | None = None) -> None:
        self.path, self.info, self._stream = path, info, stream
        self.done = False  # read whole, or handed to a thread that reads it whole
        self._started = False
        self._jobs = jobs
        self._short = short or (lambda what: FormatError(f"bundle is truncated inside {what}"))
        # The layout check needs index.json and manifests whole; they are small.
        if keep and info.length > MAX_LAYOUT_DOC_BYTES:
            raise FormatError(
                f"{path} is {info.length} bytes; at most {MAX_LAYOUT_DOC_BYTES} expected"
            )
        self._kept: bytearray | None = bytearray() if keep else None

    @property
    def digest(self) -> str:
        return "sha256:" + self.info.sha256

    def chunks(self, progress: Callable[[int], None] | None = None) -> Iterator[memoryview]:
        """Yield the file's bytes; raises DigestError at the end if they do not match.

        Each chunk is a view of a reused buffer, valid until the next is
        requested: write it or hash it, do not keep it (copy with ``bytes()``).
        """
        if self._started or self.done:
            raise RuntimeError(f"{self.path} was already read")
        self._started = True
        if self._jobs is not None:
            # Members handed to threads come first: a failure among them is reported
            # before anything this read finds, as a one-thread read would.
            self._jobs.drain()
        return self._chunks(progress, None)

    def _chunks(self, progress: Callable[[int], None] | None,
                stop: threading.Event | None) -> Iterator[memoryview]:
        reading = _hashed_chunks(self._stream.readinto, self.info.length, stop)
        try:
            while True:
                try:
                    chunk = next(reading)
                except StopIteration as end:
                    seen, digest = cast(tuple[int, str], end.value)
                    break
                if self._kept is not None:
                    self._kept += chunk
                if progress:
                    progress(len(chunk))
                yield chunk
        except (tarfile.TarError, EOFError):
            # Member data is not parsed: tarfile fails inside it only at an early end.
            raise self._short(self.path) from None
        except OSError as e:
            raise FormatError(f"cannot read the bundle inside {self.path}: {e}") from None
        finally:
            reading.close()
        if seen != self.info.length:
            raise self._short(self.path)
        if digest != self.info.sha256:
            raise DigestError(
                f"{self.path}: sha256 is {digest[:16]}…, signed metadata says "
                f"{self.info.sha256[:16]}…"
            )
        self.done = True

    def copy_to(self, out: IO[bytes], progress: Callable[[int], None] | None = None) -> None:
        for chunk in self.chunks(progress):
            out.write(chunk)

    def verify(self, progress: Callable[[int], None] | None = None) -> None:
        """Read and hash the file, on a background thread when the reader has them."""
        if self._jobs is not None and self._kept is None:
            self.deliver(None, progress)
            return
        for _ in self.chunks(progress):
            pass

    def deliver(self, write: Callable[[memoryview], object] | None,
                progress: Callable[[int], None] | None = None,
                finish: Callable[[BaseException | None], None] | None = None) -> None:
        """Hash the file while ``write`` takes each chunk, then call ``finish(error)``.

        ``finish`` runs once, on the same thread, with None when every byte
        matched (it may still raise, e.g. a failed fsync, which becomes this
        member's error) or with the error. With background threads this
        returns at once and the error, if any, is raised by the reader's
        loop in archive order; without them it is raised here.
        """
        jobs = self._jobs
        if jobs is None or self._kept is not None:
            self._run(write, progress, finish, None, self.chunks)
            return
        if self._started or self.done:
            raise RuntimeError(f"{self.path} was already read")
        self._started = self.done = True
        lock = jobs.progress_lock

        def locked(n: int) -> None:
            assert progress is not None
            with lock:
                progress(n)

        def job() -> None:
            self._run(write, locked if progress else None, finish, jobs.stop,
                      lambda p: self._chunks(p, jobs.stop))

        try:
            jobs.submit(job)
        except BaseException as e:
            # An earlier member failed while this one waited for room: it is never read.
            if finish is not None:
                finish(e)
            raise

    def _run(self, write: Callable[[memoryview], object] | None,
             progress: Callable[[int], None] | None,
             finish: Callable[[BaseException | None], None] | None,
             stop: threading.Event | None,
             chunks: Callable[[Callable[[int], None] | None], Iterator[memoryview]]) -> None:
        try:
            if stop is not None and stop.is_set():
                raise _Abandoned
            for chunk in chunks(progress):
                if write is not None:
                    write(chunk)
        except BaseException as e:
            if finish is not None:
                finish(e)
            raise
        if finish is not None:
            finish(None)

    def skip(self) -> None:
        """Leave the data unread and unhashed: the reader's next header read passes over it."""
        self._started = self.done = True

    @property
    def kept_wanted(self) -> bool:
        return self._kept is not None

    def read_all(self, limit: int = MAX_LAYOUT_DOC_BYTES) -> bytes:
        """Whole content of a small file (index.json, a manifest)."""
        if self.info.length > limit:
            raise FormatError(f"{self.path} is {self.info.length} bytes; at most {limit} expected")
        return b"".join(bytes(c) for c in self.chunks())

    @property
    def kept(self) -> bytes | None:
        """The whole content, when the reader asked to keep it and it has been read."""
        return bytes(self._kept) if self._kept is not None and self.done else None


class BundleReader:
    """One forward pass over a bundle from any readable binary stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        # Either way the archive is read in one forward pass. A pipe needs
        # tarfile's stream mode; a regular file is read without the stream
        # mode's buffer copies, about twice as fast.
        seekable = False
        self._stream: IO[bytes] | None = None
        self._size: int | None = None  # of a file; a pipe's is what was read when it ended
        self._counted = _Counted(stream)
        with contextlib.suppress(AttributeError, OSError):
            seekable = stream.seekable()
        try:
            if seekable:
                self._stream = stream
                at = stream.tell()
                self._size = stream.seek(0, io.SEEK_END)
                stream.seek(at)
                self._tar = _BundleTar.open(fileobj=stream, mode="r:", tarinfo=_BoundedTarInfo)
            else:
                self._tar = _BundleTar.open(  # type: ignore[call-overload]
                    fileobj=self._counted, mode="r|", bufsize=CHUNK, tarinfo=_BoundedTarInfo
                )
        except _TAR_ERRORS as e:
            raise FormatError(f"not a bundle (tar): {e or type(e).__name__}") from None
        self._seen: set[str] = set()
        self._head: BundleHead | None = None
        self._source = stream
        # A regular file opened plainly (not split parts, which hash themselves as they
        # stream, nor a pipe) can have its blobs read by several threads: its tar
        # offsets are the file descriptor's own.
        self._fd: int | None = None
        if isinstance(stream, io.BufferedReader | io.FileIO):
            with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
                fd = stream.fileno()
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    self._fd = fd

    @property
    def end_offset(self) -> int:
        """Where the last member read ends in the archive (its data padded to 512 bytes)."""
        return int(self._tar.offset)  # type: ignore[attr-defined]

    def _next(self) -> tarfile.TarInfo | None:
        try:
            m = self._tar.next()
        except _TAR_ERRORS as e:
            raise FormatError(f"bundle is truncated or corrupt: {e or type(e).__name__}") from None
        self._tar.members.clear()  # type: ignore[attr-defined]  # keep memory flat for bundles with many members
        if m is not None:
            _check_member(m)
            if m.name in self._seen:
                raise FormatError(f"bundle member {m.name!r} appears twice")
            self._seen.add(m.name)
        return m

    def _have(self) -> tuple[str, int]:
        return ("file", self._size) if self._size is not None else (
            "stream", self._counted.count)

    def _needed(self, at: int, rest: Mapping[str, FileInfo]) -> int:
        """Bytes the archive needs at least: to ``at``, then a header and data per file left."""
        return at + sum(_BLOCK + -(-i.length // _BLOCK) * _BLOCK for i in rest.values()) \
            + 2 * _BLOCK

    def _short_copy(self, where: str, needed: int) -> FormatError:
        kind, have = self._have()
        return FormatError(
            f"bundle is truncated {where}: the {kind} has {have} bytes, the signed contents "
            f"need at least {needed}; a short copy: copy it again from the source media"
        )

    def _short_copy_in(self, needed: int, path: str) -> FormatError:
        return self._short_copy(f"inside {path}", needed)

    def _data(self, m: tarfile.TarInfo) -> _Readable:
        if self._stream is not None:
            # Regular, non-sparse members (_check_member) are contiguous: read
            # them straight from the file into the caller's buffer, no copies.
            self._stream.seek(m.offset_data)
            return _Window(self._stream, m.size)
        f = self._tar.extractfile(m)
        assert f is not None  # regular files always have a file object
        return cast(_Readable, f)

    def _read_small(self, m: tarfile.TarInfo) -> bytes:
        if m.size > MAX_METADATA_BYTES:
            raise FormatError(f"{m.name} is {m.size} bytes; larger than any metadata may be")
        f = self._tar.extractfile(m)
        assert f is not None  # regular files always have a file object
        try:
            data = f.read()
        except OSError as e:
            raise FormatError(f"cannot read the bundle inside {m.name}: {e}") from None
        except (tarfile.TarError, EOFError):
            data = b""
        if len(data) != m.size:
            needed = m.offset_data + -(-m.size // _BLOCK) * _BLOCK + 2 * _BLOCK
            kind, have = self._have()
            raise ShortFrontError(
                f"bundle is truncated inside {m.name}: the {kind} has {have} bytes, its "
                f"metadata needs at least {needed}; a short copy: copy it again from the "
                "source media", needed)
        return data

    def head(self) -> BundleHead:
        """Read the signed metadata at the front; no blob is read."""
        if self._head is not None:
            return self._head
        first = self._next()
        if first is None:
            raise FormatError("bundle is empty")
        root_json = None
        m: tarfile.TarInfo | None = first
        if first.name == ROOT_PATH:
            root_json = self._read_small(first)
            m = self._next()
        if m is None or m.name != RELEASE_PATH:
            found = "the end" if m is None else repr(m.name)
            raise FormatError(f"bundle must start with {RELEASE_PATH}, found {found}")
        slot = self._read_small(m)
        self._head = BundleHead(slot.rstrip(_JSON_SPACE), root_json, m.offset, m.offset_data,
                                m.size)
        return self._head

    def files(
        self, listed: Mapping[str, FileInfo], expected: Sequence[str] = (), *,
        hash_unread: bool = True,
    ) -> Generator[BundleFile, None, None]:
        """Yield each listed file in archive order; refuse anything else.

        This is the one loop that reads a bundle's body, for ``airlock verify``
        and ``airlock-agent install`` alike. Each yielded file checks its own
        length and sha256 as the caller reads it; a file the caller does not
        read is read and checked before the next one, so nothing passes
        unhashed. ``index.json`` and the manifests it names are kept as they
        stream past and checked by :class:`LayoutCheck`. ``listed`` is the
        whole release; ``expected`` are the digests a delta bundle leaves out
        because the device holds them (listed, but not carried).

        ``hash_unread=False`` (``airlock inspect --fast``) passes over the data
        of a file the caller does not read instead of hashing it; the
        archive's structure is still read whole: every header, every listed
        file present with its signed length, the layout documents checked,
        and the data of each file inside the archive (tarfile refuses an
        archive that ends inside a member).
        """
        self.head()
        jobs = _Jobs(self._fd) if self._fd is not None else None
        try:
            yield from self._files(listed, expected, hash_unread, jobs)
            if jobs is not None:
                jobs.drain()
        except RejectedError:
            if jobs is not None:
                # An earlier member's failure comes first, as in a one-thread read.
                jobs.drain()
            raise
        finally:
            # Anything else (the caller left the loop, an interrupt): stop what still runs.
            if jobs is not None:
                jobs.close()

    def _files(self, listed: Mapping[str, FileInfo], expected: Sequence[str],
               hash_unread: bool, jobs: _Jobs | None) -> Iterator[BundleFile]:
        layout = LayoutCheck(listed, expected)
        left_out = {BLOB_PREFIX + d[7:] for d in expected}
        remaining = {p: i for p, i in listed.items() if p not in left_out}
        # What the files not read yet take in the archive, kept as a running sum so a
        # short-copy message can say what the archive needs without a pass per file.
        rest = sum(_BLOCK + -(-i.length // _BLOCK) * _BLOCK for i in remaining.values())
        while True:
            if jobs is not None:
                jobs.reap()
            m = self._next()
            if m is None:
                break
            if m.name in (ROOT_PATH, RELEASE_PATH):
                raise FormatError(f"{m.name} must come first in the bundle")
            info = remaining.pop(m.name, None)
            if info is None and m.name in left_out:
                raise FormatError(f"bundle member {m.name!r} is one the signed metadata expects "
                                  "on the device, not in the bundle")
            if info is None:
                raise FormatError(f"bundle member {m.name!r} is not listed in the signed metadata")
            if m.size != info.length:
                raise DigestError(
                    f"{m.name} is {m.size} bytes; signed metadata says {info.length} bytes"
                )
            rest -= _BLOCK + -(-info.length // _BLOCK) * _BLOCK
            end = m.offset_data + -(-m.size // _BLOCK) * _BLOCK
            data = (_PreadWindow(self._fd, m.offset_data, m.size) if self._fd is not None
                    else self._data(m))
            member = BundleFile(m.name, info, data, keep=layout.wants(m.name),
                                short=partial(self._short_copy_in, end + rest + 2 * _BLOCK),
                                jobs=jobs)
            yield member
            if not member.done:
                if hash_unread or member.kept_wanted:
                    member.verify()
                else:
                    member.skip()
            if member.kept is not None:
                layout.see(member.path, member.kept)
        # A split bundle's parts are checked whole, the tar's end padding included.
        verify_rest = getattr(self._source, "verify_rest", None)
        if callable(verify_rest):
            verify_rest()
        if jobs is not None:
            jobs.drain()  # a member's own failure comes before "missing"
        missing = sorted(remaining)
        if missing:
            lacks = (f"bundle lacks {missing[0]}"
                     + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                     + " listed in the signed metadata")
            needed = self._needed(self._tar.offset, remaining)
            if self._have()[1] < needed:
                kind, have = self._have()
                raise FormatError(f"{lacks}: the {kind} has {have} bytes, the signed contents "
                                  f"need at least {needed}; a short copy: copy it again from "
                                  "the source media")
            raise FormatError(lacks + " (truncated or incomplete copy?)")


_BLOCK = tarfile.BLOCKSIZE


class _Counted:
    """A pipe as tarfile's stream mode reads it, counting the bytes (for short-copy errors)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.count = stream, 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.count += len(data)
        return data


# Headers that tarfile reads whole into memory before the member they describe.
_EXTENDED_TYPES = (
    tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
)

# What tarfile raises on hostile input. ValueError: its pax sparse-map parser
# fails that way on garbage. RecursionError and MemoryError: a bound below
# missed a way to exhaust the reader; still a bad bundle, never exit 1.
_TAR_ERRORS = (
    tarfile.TarError, OSError, EOFError, UnicodeError, ValueError, RecursionError, MemoryError,
)


class _BundleTar(tarfile.TarFile):
    """A TarFile that counts the extended headers it has read, for :class:`_BoundedTarInfo`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before TarFile.__init__, which already reads the first header.
        self.extended_bytes = 0  # in the whole archive so far
        self.extended_in_row = 0  # before the member being read
        super().__init__(*args, **kwargs)


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that bounds extended headers before tarfile reads and parses them.

    tarfile reads a pax or GNU long-name header whole, parses it (quadratic
    on unpatched Pythons, CVE-2024-6232), then recurses to read the header it
    describes. Each header's size, the headers in a row and their total in
    the archive are bounded (``airlock.limits``), so none of that grows with
    what an attacker writes.
    """

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size < 0:  # base-256 sizes can be negative; tarfile would seek backwards
            raise FormatError(f"bundle has a tar header with negative size {self.size}")
        if self.type not in _EXTENDED_TYPES:
            return super()._proc_member(tar)  # type: ignore[misc, no-any-return]
        if self.size > MAX_EXTENDED_HEADER_BYTES:
            raise FormatError(
                f"bundle has a {self.size}-byte extended tar header; at most "
                f"{MAX_EXTENDED_HEADER_BYTES} bytes are allowed"
            )
        counts = cast(_BundleTar, tar)
        counts.extended_bytes += self.size
        if counts.extended_bytes > MAX_EXTENDED_HEADER_TOTAL_BYTES:
            raise FormatError(
                f"bundle has more than {MAX_EXTENDED_HEADER_TOTAL_BYTES} bytes of extended "
                "tar headers"
            )
        if counts.extended_in_row >= MAX_EXTENDED_HEADERS_PER_MEMBER:
            raise FormatError(
                f"bundle has more than {MAX_EXTENDED_HEADERS_PER_MEMBER} extended tar headers "
                "in a row"
            )
        counts.extended_in_row += 1
        try:
            return super()._proc_member(tar)  # type: ignore[misc, no-any-return]
        finally:
            counts.extended_in_row -= 1


def _check_member(m: tarfile.TarInfo) -> None:
    """Refuse any member a hostile archive could use against the reader's host."""
    name = m.name
    if not m.isreg() or m.issparse() or m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = "link" if m.issym() or m.islnk() else "directory" if m.isdir() else "special file"
        raise FormatError(f"bundle member {name!r} is a {kind}; only regular files are allowed")
    if m.size < 0:  # a pax 'size' record can say anything
        raise FormatError(f"bundle member {name!r} has negative size {m.size}")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or posixpath.normpath(name) != name
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise FormatError(f"bundle member {name!r} has an unsafe path")
    if not (
        name in (ROOT_PATH, RELEASE_PATH, "oci-layout", "index.json")
        or name.startswith(BLOB_PREFIX)
    ):
        raise FormatError(f"bundle member {name!r} is outside the bundle layout")
    try:
        # Defence in depth: the stdlib's own idea of a safe member.
        tarfile.data_filter(m, "/nonexistent-airlock-dest")
    except tarfile.FilterError as e:
        raise FormatError(f"bundle member {name!r} is unsafe: {e}") from None


# -- the OCI layout's own references -----------------------------------------------


class LayoutCheck:
    """Checks, while a bundle streams past, that its OCI layout references only what it has.

    The signature vouches for every file's bytes; this checks what those bytes
    say: ``index.json`` and each manifest it names must parse, and every
    descriptor they hold (manifests, configs, layers) must be listed in the
    release with the same size: carried in the bundle, or, for a delta bundle,
    expected on the device.
    A nested index (a multi-arch list) is not followed: only the platforms
    chosen at build time are carried. ``index.json`` must come before any blob,
    as the writer puts it, so no manifest streams past unchecked.
    :meth:`BundleReader.files` drives it::

        check = LayoutCheck(release.files, expected=release.delta.expects)
        if check.wants(path):        # index.json, or a manifest it named
            check.see(path, data)    # raises FormatError on a dangling reference
    """

    def __init__(self, listed: Mapping[str, FileInfo], expected: Sequence[str] = ()) -> None:
        self._listed = listed
        self._expected = {d[7:] for d in expected if d.startswith("sha256:")}
        self._manifests: set[str] = set()
        self._index_seen = "index.json" not in listed

    def wants(self, path: str) -> bool:
        """Whether ``path`` must be read whole and given to :meth:`see`."""
        if path == "index.json":
            return True
        if path.startswith(BLOB_PREFIX) and not self._index_seen:
            raise FormatError(f"{path} comes before index.json; the layout's index must come first")
        return path in self._manifests

    def see(self, path: str, data: bytes) -> None:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise FormatError(f"{path} is not valid JSON: {str(e)[:120]}") from None
        if not isinstance(doc, dict):
            raise FormatError(f"{path} is not a JSON object")
        if path == "index.json":
            self._index_seen = True
            for d in self._descriptors(path, doc, "manifests"):
                if self._check(path, d) and d.get("mediaType") not in INDEX_TYPES:
                    self._manifests.add(BLOB_PREFIX + d["digest"][7:])
        elif doc.get("mediaType") not in INDEX_TYPES and "manifests" not in doc:
            config = doc.get("config")
            for d in [*([config] if config is not None else []), *self._descriptors(path, doc, "layers")]:
                self._check(path, d)

    @staticmethod
    def _descriptors(path: str, doc: dict[str, Any], key: str) -> list[Any]:
        found = doc.get(key, [])
        if not isinstance(found, list):
            raise FormatError(f"{path}: '{key}' is not a list")
        return found

    def _check(self, path: str, d: Any) -> bool:
        """True when ``d`` is carried in this bundle; raises unless listed with its size."""
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            raise FormatError(f"{path} holds a descriptor without a digest")
        digest, size = d["digest"], d.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise FormatError(f"{path}: descriptor {digest[:23]}… has no valid size")
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise FormatError(f"{path}: descriptor digest {digest[:80]!r} is not sha256")
        info = self._listed.get(BLOB_PREFIX + digest[7:])
        carried = digest[7:] not in self._expected
        if info is None:
            raise FormatError(
                f"{path} names {digest[:23]}… that the bundle does not carry (incomplete layout)"
            )
        if info.length != size:
            raise FormatError(
                f"{path} says {digest[:23]}… is {size} bytes; the "
                f"{'bundle carries' if carried else 'release expects'} {info.length}"
            )
        return carried
