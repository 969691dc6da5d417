"""The bundle format, and its one reader, shared by both sides.

A bundle is one uncompressed POSIX (pax) tar::

    airlock/root.json      optional: a rotated trust root, signed by the old one
    airlock/release.json   signed release metadata (a keys.release.Release)
    oci-layout             \\
    index.json              > a standard OCI image layout
    blobs/sha256/<hex>     /  small blobs first, then layers and models

Metadata comes first so a reader checks signatures before it reads any blob.
The rest of the format lives beside this module: ``airlock.format.writer``
(the one writer, reproducible), ``airlock.format.slot`` (the padded metadata
slot a signature is added into), ``airlock.format.hashing`` (pipelined and
threaded blob hashing), ``airlock.format.tar_bounds`` (what tarfile may
parse) and ``airlock.format.layout_check`` (the OCI layout's references).

Reading is one forward pass that works from a pipe::

    reader = BundleReader(stream)
    head = reader.head()                      # metadata only; nothing else read yet
    head.slot_offset, head.slot_size          # where the metadata slot's bytes are
    trust, verified = root.verify_head(head.release_json, head.root_json)  # keys decides
    for member in reader.files(verified.release.files):
        member.copy_to(out)                   # hashes while copying; raises on mismatch

From a regular file, ``member.verify()`` and ``member.deliver(write)`` hand
the blob to one of ``HASH_THREADS`` threads (positioned reads, so they share
no file offset) and return; the loop settles them in archive order, raising
the first bad member's error before anything found further on, and ends only
when every one has matched.

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
import io
import os
import stat
import tarfile
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import IO, cast

from airlock.errors import DigestError, FormatError, RejectedError
from airlock.format.hashing import Abandoned, HashJobs, PreadWindow, Readable, Window, hashed_chunks
from airlock.format.layout_check import FileInfo, LayoutCheck
from airlock.format.oci import BLOB_PREFIX
from airlock.format.slot import JSON_SPACE, RELEASE_PATH, ROOT_PATH
from airlock.format.tar_bounds import TAR_ERRORS, BoundedTarInfo, BundleTar, check_member
from airlock.format.tar_bounds import member as member_label
from airlock.limits import CHUNK, MAX_LAYOUT_DOC_BYTES, MAX_METADATA_BYTES

__all__ = [
    "BundleFile",
    "BundleHead",
    "BundleReader",
    "FileInfo",  # defined in layout_check; keys/ and the agent name it here, beside the reader
    "ShortFrontError",
]


class ShortFrontError(FormatError):
    """The archive ends inside the metadata at its front: a copy cut short, or still going.

    ``needed`` is the least size the archive has (through that member, and
    the end blocks): a drop folder waits for it. The metadata slot makes the
    front several KiB, so half a copied bundle can end there.
    """

    def __init__(self, message: str, needed: int) -> None:
        super().__init__(message)
        self.needed = needed


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

    def __init__(self, path: str, info: FileInfo, stream: Readable, *, keep: bool = False,
                 short: Callable[[str], FormatError] | None = None,
                 jobs: HashJobs | None = None) -> None:
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
        reading = hashed_chunks(self._stream.readinto, self.info.length, stop)
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
                raise Abandoned
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
                self._tar = BundleTar.open(fileobj=stream, mode="r:", tarinfo=BoundedTarInfo)
            else:
                self._tar = BundleTar.open(  # type: ignore[call-overload]
                    fileobj=self._counted, mode="r|", bufsize=CHUNK, tarinfo=BoundedTarInfo
                )
        except TAR_ERRORS as e:
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
        # An archive whose first block ends it has no member; tarfile on Python 3.10 would
        # next seek to offset -1 (EINVAL) instead of saying so.
        if self._tar.offset == 0 and getattr(self._tar, "firstmember", None) is None:  # type: ignore[attr-defined]
            return None
        try:
            m = self._tar.next()
        except TAR_ERRORS as e:
            raise FormatError(f"bundle is truncated or corrupt: {e or type(e).__name__}") from None
        self._tar.members.clear()  # type: ignore[attr-defined]  # keep memory flat for bundles with many members
        if m is not None:
            check_member(m)
            if m.name in self._seen:
                raise FormatError(f"{member_label(m.name)} appears twice")
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

    def _data(self, m: tarfile.TarInfo) -> Readable:
        if self._stream is not None:
            # Regular, non-sparse members (check_member) are contiguous: read
            # them straight from the file into the caller's buffer, no copies.
            self._stream.seek(m.offset_data)
            return Window(self._stream, m.size)
        f = self._tar.extractfile(m)
        assert f is not None  # regular files always have a file object
        return cast(Readable, f)

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
            found = "the end" if m is None else member_label(m.name)
            raise FormatError(f"bundle must start with {RELEASE_PATH}, found {found}")
        slot = self._read_small(m)
        self._head = BundleHead(slot.rstrip(JSON_SPACE), root_json, m.offset, m.offset_data,
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
        jobs = HashJobs(self._fd) if self._fd is not None else None
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
               hash_unread: bool, jobs: HashJobs | None) -> Iterator[BundleFile]:
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
                raise FormatError(f"{member_label(m.name)} is one the signed metadata expects "
                                  "on the device, not in the bundle")
            if info is None:
                raise FormatError(f"{member_label(m.name)} is not listed in the signed metadata")
            if m.size != info.length:
                raise DigestError(
                    f"{m.name} is {m.size} bytes; signed metadata says {info.length} bytes"
                )
            rest -= _BLOCK + -(-info.length // _BLOCK) * _BLOCK
            end = m.offset_data + -(-m.size // _BLOCK) * _BLOCK
            data = (PreadWindow(self._fd, m.offset_data, m.size) if self._fd is not None
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
