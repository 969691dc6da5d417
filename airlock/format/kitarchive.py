"""The agent kit archive: one tar, its signed list first, written by the host, read by both sides.

A kit is an uncompressed POSIX (pax) tar with one top directory, so ``tar xf``
on a site laptop gives one folder::

    airlock-agent-kit-0.2.0-linux-amd64-py3.11/kit.json          the signed list (first)
    airlock-agent-kit-0.2.0-linux-amd64-py3.11/install.sh
    airlock-agent-kit-0.2.0-linux-amd64-py3.11/verify_kit.py
    airlock-agent-kit-0.2.0-linux-amd64-py3.11/README.md
    airlock-agent-kit-0.2.0-linux-amd64-py3.11/requirements.txt
    airlock-agent-kit-0.2.0-linux-amd64-py3.11/wheels/*.whl

Writing is reproducible (sorted members, fixed owners, modes and times).
Reading is one forward pass that checks every member against the list the
caller verified (``keys.kit`` decides trust, this module only reads)::

    reader = KitReader(stream)
    top, kit_json = reader.head()                     # nothing else read yet
    kit = verify_kit(trust, kit_json)                 # the caller's trust decision
    reader.extract(files_of(kit), dest)               # or dest=None to check only

The reader refuses links, devices, unsafe or unlisted paths, wrong lengths or
digests and missing files with a :class:`~airlock.errors.FormatError`. The
agent reads a kit only from a store blob whose digest a verified release
lists, and hashes the blob first; the bundler reads the operator's own file.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from airlock.errors import DigestError, FormatError
from airlock.format.layout_check import FileInfo
from airlock.limits import CHUNK, MAX_KIT_FILES, MAX_KIT_METADATA_BYTES

__all__ = ["KIT_METADATA", "KitMember", "KitReader", "write_kit"]

KIT_METADATA = "kit.json"
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}\Z")


@dataclass(frozen=True)
class KitMember:
    """One file to put in a kit: its path inside the top directory and where its bytes are."""

    path: str
    source: Path | bytes
    executable: bool = False

    @property
    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size


def _info(name: str, size: int, mtime: int, mode: int, kind: bytes = tarfile.REGTYPE
          ) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.type = size, mtime, mode, kind
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def write_kit(out: BinaryIO, top: str, kit_json: bytes, members: Sequence[KitMember],
              *, mtime: int) -> None:
    """Write the kit tar: the top directory, ``kit.json``, then every member sorted by path."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        tar.addfile(_info(top, 0, mtime, 0o755, tarfile.DIRTYPE))
        tar.addfile(_info(f"{top}/{KIT_METADATA}", len(kit_json), mtime, 0o644),
                    io.BytesIO(kit_json))
        dirs: set[str] = set()
        for m in sorted(members, key=lambda m: m.path):
            parent = posixpath.dirname(m.path)
            if parent and parent not in dirs:
                dirs.add(parent)
                tar.addfile(_info(f"{top}/{parent}", 0, mtime, 0o755, tarfile.DIRTYPE))
            mode = 0o755 if m.executable else 0o644
            with _open(m.source) as src:
                tar.addfile(_info(f"{top}/{m.path}", m.size, mtime, mode), src)


def _open(source: Path | bytes) -> IO[bytes]:
    return io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")


class KitReader:
    """One forward pass over a kit tar from a readable binary stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        try:
            self._tar = tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK)  # type: ignore[call-overload]  # noqa: SIM115
        except (tarfile.TarError, OSError, EOFError, ValueError) as e:
            raise FormatError(f"not an agent kit (tar): {e or type(e).__name__}") from None
        self._top: str | None = None
        self._count = 0

    def _next(self) -> tarfile.TarInfo | None:
        try:
            m = self._tar.next()
        except (tarfile.TarError, OSError, EOFError, UnicodeError, ValueError) as e:
            raise FormatError(f"agent kit is truncated or corrupt: {e or type(e).__name__}") from None
        self._tar.members.clear()  # type: ignore[attr-defined]  # memory stays flat
        if m is None:
            return None
        self._count += 1
        if self._count > MAX_KIT_FILES + 10:
            raise FormatError(f"agent kit holds more than {MAX_KIT_FILES} files")
        parts = m.name.split("/")
        if not all(_PLAIN.match(p) for p in parts) or len(m.name) > 400:
            raise FormatError(f"agent kit member {m.name[:80]!r} has an unsafe path")
        if self._top is not None and parts[0] != self._top:
            raise FormatError(f"agent kit member {m.name[:80]!r} is outside {self._top}/")
        if not (m.isdir() or (m.isreg() and m.type in (tarfile.REGTYPE, tarfile.AREGTYPE))):
            raise FormatError(f"agent kit member {m.name[:80]!r} is not a file or directory")
        # No stdlib tar data filter (Debian 12's 3.11.2 lacks it); its rules are the
        # checks above: plain names only (no '/' start, no '..'), one top
        # directory, files and directories only, and _copy keeps mode & 0o755.
        return m

    def head(self) -> tuple[str, bytes]:
        """The top directory's name and the bytes of ``kit.json`` (not yet verified)."""
        first = self._next()
        if first is None or not first.isdir() or "/" in first.name:
            raise FormatError("agent kit must start with its top directory")
        self._top = first.name
        m = self._next()
        if m is None or m.name != f"{self._top}/{KIT_METADATA}" or not m.isreg():
            raise FormatError(f"agent kit must list its files in {self._top}/{KIT_METADATA} first")
        if m.size > MAX_KIT_METADATA_BYTES:
            raise FormatError(f"agent kit's {KIT_METADATA} is larger than "
                              f"{MAX_KIT_METADATA_BYTES} bytes")
        f = self._tar.extractfile(m)
        assert f is not None  # a regular member always has a file object
        data = f.read()
        if len(data) != m.size:
            raise FormatError(f"agent kit is truncated inside {KIT_METADATA}")
        return self._top, data

    def extract(self, listed: Mapping[str, FileInfo], dest: Path | None) -> None:
        """Check (and with ``dest``, write) every member against ``listed``; refuse anything else."""
        if self._top is None:
            raise RuntimeError("read the head first")
        remaining = dict(listed)
        while (m := self._next()) is not None:
            rel = m.name[len(self._top) + 1:]
            if m.isdir():
                if dest is not None:
                    (dest / rel).mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            info = remaining.pop(rel, None)
            if info is None:
                raise FormatError(f"agent kit member {rel!r} is not listed in {KIT_METADATA}")
            if m.size != info.length:
                raise DigestError(f"agent kit member {rel!r} is {m.size} bytes; "
                                  f"{KIT_METADATA} says {info.length}")
            self._copy(m, rel, info, dest)
        if remaining:
            missing = sorted(remaining)
            raise FormatError(f"agent kit lacks {missing[0]}"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))

    def _copy(self, m: tarfile.TarInfo, rel: str, info: FileInfo, dest: Path | None) -> None:
        src = self._tar.extractfile(m)
        assert src is not None  # a regular member always has a file object
        h = hashlib.sha256()
        out: BinaryIO | None = None
        if dest is not None:
            target = dest / rel
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, m.mode & 0o755 | 0o400)
            out = os.fdopen(fd, "wb")
        try:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                if out is not None:
                    out.write(chunk)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise FormatError(f"agent kit is truncated inside {rel}: {e}") from None
        finally:
            if out is not None:
                out.close()
        if h.hexdigest() != info.sha256:
            raise DigestError(f"agent kit member {rel!r} does not match its sha256 in "
                              f"{KIT_METADATA}")
