"""Split media: a bundle cut into parts that fit a FAT32 stick, read back as one stream.

``airlock split`` (or ``airlock build --max-size``) writes::

    vision-1.2.0.airlock.part001      at most --max-size bytes each
    vision-1.2.0.airlock.part002
    vision-1.2.0.airlock.parts.json   each part's name, size and sha256; the bundle's size and sha256

The concatenation of the parts is the bundle, byte for byte, so
``cat vision-1.2.0.airlock.part* | airlock-agent install -`` works; but the
agent and ``airlock verify`` read the parts directly, in one pass, never
joining them on disk::

    source = resolve_media(Path("/media/usb/vision-1.2.0.airlock.part001"))  # or .parts.json, or the dir
    with PartsReader(source) as stream:      # one seekable stream over every part
        reader = BundleReader(stream)        # the ordinary bundle reader, fast path included
        ...
    except RejectedError as e:
        raise explain(stream, e)             # "…part003 is corrupt; copy it again"

Each part is hashed as it streams past and checked against ``parts.json`` the
moment its last byte is read; a part that is missing or of the wrong size is
refused before a byte is read. A bundle error in the middle of a part (a
blob's digest) is explained by :func:`explain`, which finishes hashing the
part being read and names it when it is the culprit. ``parts.json`` itself is
unsigned: it only names parts and lets errors point at the one to re-copy.
The bundle's own signature is what vouches for the bytes.

Without ``parts.json`` the parts are found by their numbers (``part001``,
``part002``, … with no gap); errors then name the bundle member, not the part.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from airlock.console import open_bundle, shown
from airlock.errors import FormatError, RejectedError, SignatureError, UsageError
from airlock.files import MediumError, PartialFile, open_on_medium, read_on_medium
from airlock.format.oci import is_sha256_hex
from airlock.limits import CHUNK, MAX_PARTS, MAX_PARTS_MANIFEST_BYTES

__all__ = [
    "PARTS_SUFFIX",
    "Part",
    "PartSet",
    "PartsReader",
    "PartsWriter",
    "explain",
    "open_media",
    "parse_size",
    "part_name",
    "resolve_media",
]

PARTS_SUFFIX = ".parts.json"
_PART = re.compile(r"^(?P<bundle>.+)\.part(?P<n>[0-9]{3})$")
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """``4000MiB`` -> 4194304000. K/M/G (and KB/MB/GB) are powers of 1000, KiB/MiB/GiB of 1024."""
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise UsageError(f"size {text!r} is not a size like 4000MiB, 700M or 1GiB")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size < 1:
        raise UsageError(f"size {text!r} must be at least one byte")
    return size


def part_name(bundle_name: str, number: int) -> str:
    """The file name of part ``number`` (1-based) of ``bundle_name``: ``NAME.part001``."""
    return f"{bundle_name}.part{number:03d}"


@dataclass(frozen=True)
class Part:
    """One part file: where it is, how big it must be, its sha256 when ``parts.json`` says."""

    path: Path
    size: int
    sha256: str | None
    number: int  # 1-based


@dataclass(frozen=True)
class PartSet:
    """The parts of one split bundle, in order."""

    bundle_name: str
    parts: tuple[Part, ...]
    manifest: Path | None  # the parts.json they came from, if any
    size: int
    sha256: str | None  # of the whole bundle

    @property
    def label(self) -> str:
        return str(self.manifest or self.parts[0].path)

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle_name, "size": self.size, "sha256": self.sha256,
                "manifest": None if self.manifest is None else str(self.manifest),
                "parts": [{"name": p.path.name, "size": p.size, "sha256": p.sha256}
                          for p in self.parts]}


# -- finding the parts ----------------------------------------------------------


def resolve_media(path: Path) -> PartSet | Path | None:
    """What ``path`` names: a split bundle, one bundle in a directory, or None (a plain file).

    ``path`` may be ``NAME.parts.json``, any ``NAME.partNNN``, or a directory
    holding one split bundle (or one ``.airlock`` file).
    """
    if path.is_dir():
        return _only_bundle_in(path)
    if path.name.endswith(PARTS_SUFFIX):
        return _from_manifest(path)
    m = _PART.match(path.name)
    if m is None:
        return None
    manifest = path.with_name(m.group("bundle") + PARTS_SUFFIX)
    if manifest.exists():
        return _from_manifest(manifest)
    return _numbered(path)


def _only_bundle_in(directory: Path) -> PartSet | Path:
    """The one bundle in ``directory``, split or whole; more than one is refused: "name one".

    A split bundle counts once (its parts.json and its parts are one bundle);
    a whole bundle beside a split one is two, even when they are copies of each
    other: which one the operator meant is not ours to guess.
    """
    manifests = sorted(directory.glob("*" + PARTS_SUFFIX))
    split = {m.name[:-len(PARTS_SUFFIX)]: m for m in manifests}
    for first in sorted(directory.glob("*.part001")):
        split.setdefault(first.name[:-len(".part001")], first)
    whole = sorted(directory.glob("*.airlock"))
    found = sorted([p.name for p in split.values()] + [p.name for p in whole])
    if not found:
        raise UsageError(f"{directory} holds no bundle, no parts and no {PARTS_SUFFIX}")
    if len(found) > 1:
        raise UsageError(f"{directory} holds {len(found)} bundles ({', '.join(found[:4])}"
                         f"{', …' if len(found) > 4 else ''}); name one")
    if whole:
        return whole[0]
    only = next(iter(split.values()))
    return _from_manifest(only) if only.name.endswith(PARTS_SUFFIX) else _numbered(only)


def _numbered(any_part: Path) -> PartSet:
    """Parts found by number alone (no parts.json): part001, part002, … with no gap."""
    m = _PART.match(any_part.name)
    assert m is not None
    bundle = m.group("bundle")
    try:
        names = [p.name for p in any_part.parent.iterdir()]
    except OSError as e:
        raise UsageError(f"cannot open {any_part}: {e.strerror}") from None
    numbers = sorted(int(found.group("n")) for name in names
                     if (found := _PART.match(name)) and found.group("bundle") == bundle)
    if not numbers:
        raise FormatError(f"{any_part} is missing; copy it again from the source media")
    parts = []
    for expected, number in enumerate(numbers, start=1):
        path = any_part.with_name(part_name(bundle, expected))
        if number != expected:
            raise FormatError(f"{path.name} is missing (found parts up to "
                              f"{part_name(bundle, numbers[-1])}); copy it again")
        parts.append(Part(path, _regular_size(path), None, expected))
    return PartSet(bundle, tuple(parts), None, sum(p.size for p in parts), None)


def _regular_size(path: Path) -> int:
    """The size of the part or list at ``path``: a regular file of the medium, never
    through a link (``airlock.files.open_on_medium``)."""
    try:
        with open_on_medium(path.parent, path.name) as f:
            return os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise FormatError(f"{path.name} is missing; copy it again from the source media") from None
    except MediumError as e:
        raise FormatError(f"{e}; copy it again from the source media") from None
    except OSError as e:
        raise FormatError(f"cannot read {path}: {e.strerror}") from None


def _from_manifest(manifest: Path) -> PartSet:
    """The parts ``parts.json`` names, each present with the size it says (nothing read yet)."""
    if _regular_size(manifest) > MAX_PARTS_MANIFEST_BYTES:
        raise FormatError(f"{manifest} is larger than {MAX_PARTS_MANIFEST_BYTES} bytes; "
                          "it is not a parts list")
    try:
        raw = json.loads(read_on_medium(manifest.parent, manifest.name,
                                        MAX_PARTS_MANIFEST_BYTES))
    except MediumError as e:
        raise FormatError(f"{e}; it is not a parts list") from None
    except (ValueError, RecursionError):
        # Never the parser's words: they may quote what the file holds.
        raise FormatError(f"{manifest} is not valid JSON") from None
    except OSError as e:
        raise FormatError(f"cannot read {manifest}: {e.strerror}") from None
    doc = _Doc(raw, manifest.name)
    bundle = doc.name("bundle")
    entries = doc.list("parts")
    if not 1 <= len(entries) <= MAX_PARTS:
        raise FormatError(f"{manifest.name} lists {len(entries)} parts; 1 to {MAX_PARTS} expected")
    parts: list[Part] = []
    for number, raw_part in enumerate(entries, start=1):
        entry = _Doc(raw_part, f"{manifest.name} part {number}")
        name = entry.name("name")
        if name != part_name(bundle, number):
            # The names are derived, never trusted: no path of the list reaches open().
            raise FormatError(f"{manifest.name} names part {number} {shown(name)}; "
                              f"expected {part_name(bundle, number)!r}")
        size, sha = entry.size("size"), entry.sha256("sha256")
        path = manifest.with_name(name)
        actual = _regular_size(path)
        if actual != size:
            raise FormatError(f"{name} is {actual} bytes but {manifest.name} says {size}; "
                              "a short or wrong copy: copy it again from the source media")
        parts.append(Part(path, size, sha, number))
    total = doc.size("size")
    if total != sum(p.size for p in parts):
        raise FormatError(f"{manifest.name} says the bundle is {total} bytes but its parts "
                          f"add up to {sum(p.size for p in parts)}")
    return PartSet(bundle, tuple(parts), manifest, total, doc.sha256("sha256"))


class _Doc:
    """Typed reads of the untrusted parts.json, each failure a FormatError naming the field."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise FormatError(f"{where} is not a JSON object")
        self.raw, self.where = raw, where

    def _get(self, key: str, kind: type) -> Any:
        value = self.raw.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            what = {int: "an integer", str: "a string", list: "a list"}[kind]
            raise FormatError(f"{self.where}: '{key}' is missing or not {what}")
        return value

    def name(self, key: str) -> str:
        value: str = self._get(key, str)
        if (not value or value != os.path.basename(value) or value.startswith(".")
                or any(ord(c) < 32 or c in "\\\x7f" for c in value) or len(value) > 255):
            raise FormatError(f"{self.where}: '{key}' {shown(value)} is not a plain file name")
        return value

    def size(self, key: str) -> int:
        value: int = self._get(key, int)
        if value < 0:
            raise FormatError(f"{self.where}: '{key}' is negative")
        return value

    def sha256(self, key: str) -> str:
        value: str = self._get(key, str)
        if not is_sha256_hex(value):
            raise FormatError(f"{self.where}: '{key}' is not a sha256 in hex")
        return value

    def list(self, key: str) -> list[Any]:
        value: list[Any] = self._get(key, list)
        return value


# -- reading ---------------------------------------------------------------------


class PartsReader(io.RawIOBase):
    """The parts of a split bundle as one readable, seekable stream, each part checked.

    Every byte of a part is hashed exactly once and in order, whatever the
    reader's seeks (a forward seek hashes the bytes it skips); when a part's
    last byte has been hashed, its sha256 must match ``parts.json`` or the
    read raises a FormatError naming the part.
    """

    def __init__(self, parts: PartSet) -> None:
        super().__init__()
        self.set = parts
        self.size = parts.size
        self._starts: list[int] = []
        at = 0
        for p in parts.parts:
            self._starts.append(at)
            at += p.size
        self._pos = 0
        self._open_no = -1
        self._file: io.FileIO | None = None
        self._hash_no = 0  # index of the part being hashed; those before it are checked
        self._hashed = 0  # bytes of that part hashed so far
        self._hash = hashlib.sha256()
        self._skip_empty()

    # io.RawIOBase
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        got = 0
        while got < len(view) and self._pos < self.size:
            i = bisect_right(self._starts, self._pos) - 1
            while self.set.parts[i].size == 0:
                i += 1
            part, local = self.set.parts[i], self._pos - self._starts[i]
            self._catch_up(i, local)
            want = min(len(view) - got, part.size - local)
            f = self._open(i)
            f.seek(local)
            n = f.readinto(view[got : got + want]) or 0
            if n == 0:
                raise FormatError(f"{part.path.name} ended at byte {local} of {part.size}: it "
                                  "changed while being read; copy it again")
            if i == self._hash_no and local + n > self._hashed:
                self._hash.update(view[got + self._hashed - local : got + n])
                self._hashed = local + n
                if self._hashed == part.size:
                    self._finish_part()
            self._pos += n
            got += n
        return got

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()

    # checking
    def verify_rest(self) -> None:
        """Hash every part not yet fully read (the tar's end padding), so every part is checked."""
        last = len(self.set.parts) - 1
        self._catch_up(last, self.set.parts[last].size)

    def diagnose(self, error: RejectedError) -> RejectedError:
        """``error`` restated as the corrupt part that caused it, when a part is to blame."""
        if self._hash_no >= len(self.set.parts) or self.set.parts[self._hash_no].sha256 is None:
            return error
        try:
            part = self.set.parts[self._hash_no]
            self._catch_up(self._hash_no, part.size)
        except FormatError as better:
            return better
        except OSError:
            return error
        return error

    def _skip_empty(self) -> None:
        while self._hash_no < len(self.set.parts) and self.set.parts[self._hash_no].size == 0:
            self._finish_part()

    def _catch_up(self, i: int, local: int) -> None:
        """Hash, in order, every byte before offset ``local`` of part ``i`` not hashed yet."""
        while self._hash_no < len(self.set.parts) and (
                self._hash_no < i or (self._hash_no == i and self._hashed < local)):
            no = self._hash_no
            part = self.set.parts[no]
            end = part.size if no < i else local
            f = self._open(no)
            f.seek(self._hashed)
            while self._hashed < end:
                data = f.read(min(CHUNK, end - self._hashed))
                if not data:
                    raise FormatError(f"{part.path.name} ended at byte {self._hashed} of "
                                      f"{part.size}: it changed while being read; copy it again")
                self._hash.update(data)
                self._hashed += len(data)
            if self._hashed == part.size:
                self._finish_part()

    def _finish_part(self) -> None:
        part = self.set.parts[self._hash_no]
        digest = self._hash.hexdigest()
        if part.sha256 is not None and digest != part.sha256:
            raise self._bad_part(part, digest)
        self._hash_no += 1
        self._hashed = 0
        self._hash = hashlib.sha256()
        if self._hash_no < len(self.set.parts) and self.set.parts[self._hash_no].size == 0:
            self._skip_empty()

    def _bad_part(self, part: Part, digest: str) -> FormatError:
        total = len(self.set.parts)
        where = self.set.manifest.name if self.set.manifest else "parts.json"
        other = next((p for p in self.set.parts if p.sha256 == digest), None)
        if other is not None:
            return FormatError(
                f"{part.path.name} (part {part.number} of {total}) holds the content of "
                f"{other.path.name}: the parts were renamed or copied out of order; copy "
                f"{part.path.name} again from the source media")
        return FormatError(
            f"{part.path.name} (part {part.number} of {total}) is corrupt: its sha256 is "
            f"{digest[:16]}…, {where} says {(part.sha256 or '')[:16]}…; copy "
            f"{part.path.name} again from the source media")

    def _open(self, i: int) -> io.FileIO:
        if self._open_no != i or self._file is None:
            if self._file is not None:
                self._file.close()
                self._file = None
            path = self.set.parts[i].path
            try:
                self._file = open_on_medium(path.parent, path.name)  # never through a link
            except FileNotFoundError:
                raise FormatError(f"{path.name} is missing; copy it again") from None
            except MediumError as e:
                raise FormatError(f"{e}; copy it again from the source media") from None
            self._open_no = i
        return self._file


def explain(stream: object, error: RejectedError) -> RejectedError:
    """For a bundle read from parts, the part to blame for ``error`` (else ``error`` itself).

    Only errors that damaged bytes can cause are looked into (a format or digest
    error, a signature that does not verify): finding the culprit may read the
    rest of a 4000 MiB part, which a policy refusal must not cost.
    """
    if isinstance(stream, PartsReader) and isinstance(error, (FormatError, SignatureError)):
        better = stream.diagnose(error)
        if better is not error:
            better.__cause__ = error
        return better
    return error


def open_media(path: str) -> tuple[IO[bytes], int]:
    """What ``airlock-agent install`` and ``airlock verify`` read: a bundle, its parts, or stdin.

    Returns the stream and its size (0 when unknown, for ``-``).
    """
    if path != "-":
        found = resolve_media(Path(path))
        if isinstance(found, PartSet):
            reader = PartsReader(found)
            return reader, reader.size  # type: ignore[return-value]  # a RawIOBase is a binary IO
        if isinstance(found, Path):
            path = str(found)
    return open_bundle(path)


# -- writing ---------------------------------------------------------------------


class PartsWriter(io.RawIOBase):
    """A writable stream that lands in ``NAME.part001``, ``NAME.part002``, … of ``max_size`` each.

    ``publish()`` renames the finished parts into place and writes
    ``NAME.parts.json`` last (its presence means the set is whole); until then
    every part is a hidden ``.NAME.partNNN.partial`` (an :class:`airlock.files.PartialFile`
    in the bundle's directory: a leftover there is unlinked, never followed).
    ``discard()`` removes them.
    """

    def __init__(self, bundle: Path, max_size: int,
                 progress: Callable[[int], None] | None = None) -> None:
        super().__init__()
        if max_size < 1:
            raise UsageError("--max-size must be at least one byte")
        self.bundle, self.max_size, self.progress = bundle, max_size, progress
        self._parts: list[tuple[PartialFile, int, str]] = []  # (sealed partial, size, sha256)
        self._file: PartialFile | None = None
        # One descriptor of the bundle's directory for every part (not one each).
        self._dir = os.open(bundle.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._in_part = 0
        self._hash = hashlib.sha256()
        self._whole = hashlib.sha256()
        self._pos = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            if self._file is None or self._in_part == self.max_size:
                self._next_part()
            assert self._file is not None
            n = min(len(view) - done, self.max_size - self._in_part)
            chunk = view[done : done + n]
            self._file.file.write(chunk)
            self._hash.update(chunk)
            self._whole.update(chunk)
            self._in_part += n
            done += n
        self._pos += done
        if self.progress:
            self.progress(done)
        return done

    def _next_part(self) -> None:
        self._close_part()
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise UsageError(f"the bundle needs more than {MAX_PARTS} parts of "
                             f"{self.max_size} bytes; choose a larger --max-size")
        final = part_name(self.bundle.name, number)
        self._file = PartialFile(self.bundle.with_name(final), name=f".{final}.partial",
                                 dir_fd=self._dir)
        self._in_part = 0

    def _close_part(self) -> None:
        if self._file is None:
            return
        self._file.seal()
        self._parts.append((self._file, self._in_part, self._hash.hexdigest()))
        self._file = None
        self._hash = hashlib.sha256()

    def publish(self) -> PartSet:
        """Put the parts in place and write ``parts.json``; returns what was written."""
        self._close_part()
        if not self._parts:
            self._next_part()
            self._close_part()
        name = self.bundle.name
        manifest = self.bundle.with_name(name + PARTS_SUFFIX)
        # A stale list must never describe the new parts, even for an instant.
        manifest.unlink(missing_ok=True)
        parts = []
        for number, (partial, size, sha) in enumerate(self._parts, start=1):
            partial.publish()
            parts.append(Part(partial.target, size, sha, number))
        stale = len(parts) + 1
        while self.bundle.with_name(part_name(name, stale)).exists():
            self.bundle.with_name(part_name(name, stale)).unlink()
            stale += 1
        done = PartSet(name, tuple(parts), manifest, self._pos, self._whole.hexdigest())
        body = {"airlock_parts": 1, "bundle": name, "size": done.size, "sha256": done.sha256,
                "max_size": self.max_size,
                "parts": [{"name": p.path.name, "size": p.size, "sha256": p.sha256}
                          for p in parts]}
        with PartialFile(manifest, name=f".{manifest.name}.partial", dir_fd=self._dir) as listed:
            listed.file.write((json.dumps(body, indent=2) + "\n").encode())
            listed.publish()
        self._close_dir()
        return done

    def discard(self) -> None:
        """Remove every part written so far (after a failed build or split)."""
        if self._file is not None:
            self._file.discard()
            self._file = None
        for partial, _, _ in self._parts:
            partial.discard()
        self._close_dir()

    def _close_dir(self) -> None:
        if self._dir >= 0:
            os.close(self._dir)
            self._dir = -1
