"""The bundle format: the one reader and the one writer, shared by both sides.

A bundle is one uncompressed POSIX (pax) tar::

    airlock/root.json      optional: a rotated trust root, signed by the old one
    airlock/release.json   signed release metadata (keys.release.Release)
    oci-layout             \\
    index.json              > a standard OCI image layout
    blobs/sha256/<hex>     /  small blobs first, then layers and models

Metadata comes first so a reader checks signatures before it reads any blob.
Writing is reproducible: members have fixed owners, modes and mtimes, and a
fixed order, so the same inputs and keys give the same bytes.

Reading is one forward pass that works from a pipe::

    reader = BundleReader(stream)
    head = reader.head()                      # metadata only; nothing else read yet
    trust, verified = root.verify_head(head)  # keys.trust decides
    for member in reader.files(verified.release.files):
        member.copy_to(out)                   # hashes while copying; raises on mismatch

The reader refuses, with a :class:`~keys.errors.FormatError` naming the
member: any non-regular member (links, devices, directories, sparse files),
absolute or ``..`` paths, duplicates, unlisted members, wrong lengths or
digests, truncation, and missing files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import posixpath
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Protocol, cast

from keys.errors import DigestError, FormatError
from keys.release import BLOB_PREFIX, FileInfo

__all__ = [
    "CHUNK",
    "OCI_INDEX",
    "OCI_LAYOUT",
    "OCI_MANIFEST",
    "RELEASE_PATH",
    "ROOT_PATH",
    "BundleFile",
    "BundleHead",
    "BundleReader",
    "Descriptor",
    "SourceFile",
    "canonical_json",
    "oci_index",
    "oci_layout",
    "oci_manifest",
    "write_bundle",
]

ROOT_PATH = "airlock/root.json"
RELEASE_PATH = "airlock/release.json"
OCI_LAYOUT = "application/vnd.oci.image.layout.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
CHUNK = 1024 * 1024
_MAX_META = 32 * 1024 * 1024
_FIXED_MTIME = 0


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON for blobs we write (manifests, index, golden metadata)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# -- OCI layout helpers --------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        if self.platform:
            d["platform"] = dict(self.platform)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @classmethod
    def of(cls, media_type: str, data: bytes, **kw: Any) -> Descriptor:
        return cls(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data), **kw)


def oci_layout() -> bytes:
    return canonical_json({"imageLayoutVersion": "1.0.0"})


def oci_manifest(
    config: Descriptor,
    layers: Sequence[Descriptor],
    *,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """An OCI image manifest; with ``artifact_type`` it is an artifact as ORAS makes them."""
    m: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_dict(),
        "layers": [layer.to_dict() for layer in layers],
    }
    if artifact_type:
        m["artifactType"] = artifact_type
    if annotations:
        m["annotations"] = dict(annotations)
    return canonical_json(m)


def oci_index(manifests: Sequence[Descriptor]) -> bytes:
    return canonical_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [m.to_dict() for m in manifests]}
    )


# -- writing -------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    """One file to place in the bundle's OCI layout, with its known digest."""

    path: str  # "oci-layout", "index.json" or "blobs/sha256/<hex>"
    size: int
    sha256: str
    open: Callable[[], IO[bytes]]


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
    """Write a bundle to a seekable binary file; every source is hashed again as it is copied.

    A source whose bytes differ from its declared digest (a file that changed
    during the build) aborts with a DigestError rather than making a bundle
    whose signature lies.
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
        tar.addfile(_tarinfo(RELEASE_PATH, len(release_json)), io.BytesIO(release_json))
        for f in ordered:
            with f.open() as src:
                reader = _HashingReader(src, progress)
                tar.addfile(_tarinfo(f.path, f.size), reader)  # type: ignore[arg-type]
            if reader.hash.hexdigest() != f.sha256:
                raise DigestError(f"{f.path} changed while the bundle was written; build again")


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


@dataclass(frozen=True)
class BundleHead:
    """The metadata at the front of a bundle, not yet verified."""

    release_json: bytes
    root_json: bytes | None = None


class BundleFile:
    """One OCI-layout file of a bundle, readable once, checked against its signed entry."""

    def __init__(self, path: str, info: FileInfo, stream: _Readable) -> None:
        self.path, self.info, self._stream = path, info, stream
        self.done = False

    @property
    def digest(self) -> str:
        return "sha256:" + self.info.sha256

    def chunks(self, progress: Callable[[int], None] | None = None) -> Iterator[memoryview]:
        """Yield the file's bytes; raises DigestError at the end if they do not match.

        Each chunk is a view of one reused buffer, valid until the next is
        requested: write it or hash it, do not keep it (copy with ``bytes()``).
        """
        if self.done:
            raise RuntimeError(f"{self.path} was already read")
        h, seen = hashlib.sha256(), 0
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while seen < self.info.length:
                n = self._stream.readinto(view[: min(CHUNK, self.info.length - seen)])
                if not n:
                    break
                seen += n
                h.update(view[:n])
                if progress:
                    progress(n)
                yield view[:n]
        except (tarfile.TarError, OSError, EOFError) as e:
            raise FormatError(f"bundle is truncated or corrupt inside {self.path}: {e}") from None
        self.done = True
        if seen != self.info.length:
            raise FormatError(f"bundle is truncated inside {self.path}")
        if h.hexdigest() != self.info.sha256:
            raise DigestError(
                f"{self.path}: sha256 is {h.hexdigest()[:16]}…, signed metadata says "
                f"{self.info.sha256[:16]}…"
            )

    def copy_to(self, out: IO[bytes], progress: Callable[[int], None] | None = None) -> None:
        for chunk in self.chunks(progress):
            out.write(chunk)

    def verify(self, progress: Callable[[int], None] | None = None) -> None:
        for _ in self.chunks(progress):
            pass

    def read_all(self, limit: int = _MAX_META) -> bytes:
        """Whole content of a small file (index.json, a manifest)."""
        if self.info.length > limit:
            raise FormatError(f"{self.path} is {self.info.length} bytes; at most {limit} expected")
        return b"".join(bytes(c) for c in self.chunks())


class BundleReader:
    """One forward pass over a bundle from any readable binary stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        # Either way the archive is read in one forward pass. A pipe needs
        # tarfile's stream mode; a regular file is read without the stream
        # mode's buffer copies, about twice as fast.
        seekable = False
        self._stream: IO[bytes] | None = None
        with contextlib.suppress(AttributeError, OSError):
            seekable = stream.seekable()
        try:
            if seekable:
                self._stream = stream
                self._tar = tarfile.open(fileobj=stream, mode="r:")  # noqa: SIM115
            else:
                self._tar = tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK)  # type: ignore[call-overload]  # noqa: SIM115
        except tarfile.TarError as e:
            raise FormatError(f"not a bundle (tar): {e}") from None
        self._seen: set[str] = set()
        self._head: BundleHead | None = None

    def _next(self) -> tarfile.TarInfo | None:
        try:
            m = self._tar.next()
        except (tarfile.TarError, OSError, EOFError, UnicodeError) as e:
            raise FormatError(f"bundle is truncated or corrupt: {e}") from None
        self._tar.members.clear()  # type: ignore[attr-defined]  # keep memory flat for bundles with many members
        if m is not None:
            _check_member(m)
            if m.name in self._seen:
                raise FormatError(f"bundle member {m.name!r} appears twice")
            self._seen.add(m.name)
        return m

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
        if m.size > _MAX_META:
            raise FormatError(f"{m.name} is {m.size} bytes; larger than any metadata may be")
        f = self._tar.extractfile(m)
        assert f is not None  # regular files always have a file object
        try:
            data = f.read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise FormatError(f"bundle is truncated inside {m.name}: {e}") from None
        if len(data) != m.size:
            raise FormatError(f"bundle is truncated inside {m.name}")
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
        self._head = BundleHead(self._read_small(m), root_json)
        return self._head

    def files(self, listed: Mapping[str, FileInfo]) -> Iterator[BundleFile]:
        """Yield each listed file in archive order; refuse anything else.

        A yielded file that the caller does not read is still read and checked
        before the next one, so nothing passes unhashed. A delta bundle's
        expected blobs are not listed here: they are not in the archive.
        """
        self.head()
        remaining = dict(listed)
        while True:
            m = self._next()
            if m is None:
                break
            if m.name in (ROOT_PATH, RELEASE_PATH):
                raise FormatError(f"{m.name} must come first in the bundle")
            info = remaining.pop(m.name, None)
            if info is None:
                raise FormatError(f"bundle member {m.name!r} is not listed in the signed metadata")
            if m.size != info.length:
                raise DigestError(
                    f"{m.name} is {m.size} bytes; signed metadata says {info.length} bytes"
                )
            member = BundleFile(m.name, info, self._data(m))
            yield member
            if not member.done:
                member.verify()
        missing = sorted(remaining)
        if missing:
            raise FormatError(
                f"bundle lacks {missing[0]}"
                + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                + " listed in the signed metadata (truncated or incomplete copy?)"
            )


def _check_member(m: tarfile.TarInfo) -> None:
    """Refuse any member a hostile archive could use against the reader's host."""
    name = m.name
    if not m.isreg() or m.issparse() or m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = "link" if m.issym() or m.islnk() else "directory" if m.isdir() else "special file"
        raise FormatError(f"bundle member {name!r} is a {kind}; only regular files are allowed")
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
