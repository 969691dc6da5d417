"""The drop folder: bundles a person puts on a stick are installed once, with nothing typed.

``serve --watch /media/usb`` looks at each watched folder (not below it)
every poll and hands over a drop once it is complete and stable::

    folder = DropFolder([Path("/media/usb")], settle_s=2.0, memory=DropMemory.load(layout.drops))
    for c in folder.ready():                   # unchanged for settle_s and not handled yet
        if not c.complete:
            folder.finish(c.drop, folder.incomplete(c))   # says what is missing; retried later
            continue
        outcome = folder.skipped(c) or install_it(c.drop)   # serve: under the agent lock
        folder.finish(c.drop, outcome, device_id)  # remembered; NAME.result.json/.txt written

What counts as a drop:

* ``NAME.airlock``: a bundle. Complete when the file is at least as long as
  the tar of the files its signed metadata (at the front) lists; until then
  it is being copied, or the copy stopped: the result file says how much is
  there and how much is missing, and the drop is picked up again when the
  file changes. A file whose front is not a bundle's goes to the install,
  which refuses it and says why;
* ``NAME.parts.json``: a split bundle (``airlock split``); complete when every
  part it lists is there with its listed size; installed straight from the
  parts, each checked against its listed sha256 as it streams;
* names starting with ``.`` or ending in ``.partial``/``.tmp`` are copies in
  progress and are never read.

Exactly once: a drop is remembered by the sha256 of its signed metadata once
its outcome is a property of that metadata (installed, already active,
failed its health check, refused by signature, expiry, anti-rollback or
ring), so the same release on another stick, under another name or after a
restart of ``serve`` is not installed again. An outcome that a new copy can
change (a damaged or truncated file) is remembered only for that file
(name, size, mtime), and one that time can change (no space) is retried
after ``RETRY_S``. The memory is ``ROOT/drops.json``, bounded by
``MAX_DROP_MEMORY``.

Results are written beside the drop, atomically: ``NAME.result.json`` (for
machines) and ``NAME.result.txt`` (one line, for a person with any laptop).
A read-only stick is fine: the result is then only in the journal and the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from airlock.errors import AirlockError, FormatError, UsageError
from airlock.files import read_json, write_atomic, write_json
from airlock.format.bundle import BundleReader, ShortFrontError
from airlock.format.parts import PartSet, open_media, resolve_media
from airlock.limits import MAX_DROP_MEMORY, MAX_PARTS_MANIFEST_BYTES

__all__ = ["RETRY_S", "Candidate", "Drop", "DropFolder", "DropMemory", "Outcome",
           "outcome_of_error", "write_results"]

#: An outcome that time may change (not enough space) is retried after this long.
RETRY_S = 600.0
_TAR_BLOCK = 512
_IN_PROGRESS = (".partial", ".tmp", ".part", ".crdownload")


@dataclass
class Outcome:
    """What became of a drop, as the result files say it."""

    outcome: str  # installed, already_active, skipped, failed, rejected, refused, incomplete, error
    message: str
    exit_code: int
    digest: str | None = None
    release: str | None = None
    active: str | None = None
    remember_digest: bool = False  # a property of the signed metadata (see the docstring)
    retry_after_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Drop:
    """One thing a person put on the stick: a bundle, or the parts of a split bundle."""

    folder: Path
    name: str  # NAME, the stem of the result files
    kind: str  # "bundle" or "parts"
    files: list[Path]

    @property
    def path(self) -> Path:
        return self.files[0]

    def identity(self) -> tuple[tuple[str, int, int], ...] | None:
        """Name, size and mtime of every file (what a new copy changes); a part not there
        yet counts as size -1; None when the drop itself is gone."""
        out = []
        for f in self.files:
            try:
                st = f.stat()
            except OSError:
                if f == self.path:
                    return None
                out.append((f.name, -1, 0))
                continue
            out.append((f.name, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def key(self) -> str:
        ident = self.identity()
        return hashlib.sha256(json.dumps([str(self.folder), ident]).encode()).hexdigest()

    def open(self) -> tuple[IO[bytes], int]:
        """The bundle as one stream, and its size; a split bundle's parts are read in
        place, each checked against ``NAME.parts.json`` as it streams (``airlock.format.parts``)."""
        if self.kind == "parts":
            return open_media(str(self.path))
        f = self.path.open("rb")
        return f, os.fstat(f.fileno()).st_size

    def result_paths(self) -> tuple[Path, Path]:
        return (self.folder / f"{self.name}.result.json", self.folder / f"{self.name}.result.txt")


@dataclass
class Candidate:
    """A drop that has settled: complete or not, and its signed-metadata digest when readable."""

    drop: Drop
    complete: bool
    digest: str | None = None
    least_bytes: int | None = None
    size: int = 0  # of the bundle file when it settled


def metadata_digest(drop: Drop) -> tuple[str | None, int] | None:
    """The sha256 of the drop's signed metadata and the least size its tar can have.

    The digest is None while the file ends inside the metadata at its front
    (a copy under way); None in all when the front is not a bundle's. Nothing
    here is trusted: the install checks the signature; this only says whether
    to wait.
    """
    from keys.release import Release

    if drop.kind != "bundle":
        return None
    try:
        with drop.path.open("rb") as f:
            head = BundleReader(f).head()
    except ShortFrontError as e:
        return None, e.needed
    except (AirlockError, OSError, EOFError):
        return None
    # The metadata's member is its padded slot (airlock.format.slot), not just the JSON.
    least = 2 * _TAR_BLOCK + _TAR_BLOCK + _padded(head.slot_size)
    if head.root_json is not None:
        least += _TAR_BLOCK + _padded(len(head.root_json))
    try:
        release = Release.from_bytes(head.release_json)
        least += sum(_TAR_BLOCK + _padded(info.length) for info in release.files.values())
    except AirlockError:
        pass  # not a release the agent can read: the install says why
    return hashlib.sha256(head.release_json).hexdigest(), least


def _padded(n: int) -> int:
    return -(-n // _TAR_BLOCK) * _TAR_BLOCK


class DropMemory:
    """What ``serve`` already did with drops, persisted in ``ROOT/drops.json``."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        raw = data or {}
        self.digests: dict[str, dict[str, Any]] = dict(raw.get("digests") or {})
        self.files: dict[str, dict[str, Any]] = dict(raw.get("files") or {})

    @classmethod
    def load(cls, path: Path) -> DropMemory:
        try:
            raw = read_json(path)
        except (OSError, ValueError):
            raw = None  # unreadable memory: at worst a bundle is offered to install again
        return cls(path, raw if isinstance(raw, dict) else None)

    def save(self) -> None:
        for table in (self.digests, self.files):
            while len(table) > MAX_DROP_MEMORY:
                table.pop(min(table, key=lambda k: str(table[k].get("time"))))
        with contextlib.suppress(OSError):  # a read-only ROOT forgets across restarts
            write_json(self.path, {"digests": self.digests, "files": self.files})

    def remember(self, drop: Drop, outcome: Outcome) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        entry: dict[str, Any] = {"time": now, "outcome": outcome.outcome,
                                 "release": outcome.release, "drop": str(drop.path),
                                 "retry_at": None}
        if outcome.retry_after_s is not None:
            entry["retry_at"] = time.time() + outcome.retry_after_s
        self.files[drop.key()] = entry
        if outcome.remember_digest and outcome.digest:
            self.digests[outcome.digest] = entry
        self.save()

    def handled(self, drop: Drop) -> bool:
        entry = self.files.get(drop.key())
        if entry is None:
            return False
        retry_at = entry.get("retry_at")
        return not (isinstance(retry_at, int | float) and time.time() >= retry_at)


class DropFolder:
    """Watched folders, and which of their drops are ready to be installed."""

    def __init__(self, folders: list[Path], settle_s: float, memory: DropMemory) -> None:
        self.folders, self.settle_s, self.memory = folders, settle_s, memory
        # key of a drop's current identity -> when it was first seen so
        self._seen: dict[str, float] = {}
        self._waiting: set[str] = set()  # incomplete drops whose result says so already

    def scan(self) -> Iterator[Drop]:
        for folder in self.folders:
            try:
                with os.scandir(folder) as it:
                    names = sorted(e.name for e in it if e.is_file(follow_symlinks=False))
            except OSError:
                continue  # the stick is not there (yet, or any more)
            for name in names:
                if name.startswith(".") or name.endswith(_IN_PROGRESS):
                    continue
                if name.endswith(".airlock"):
                    yield Drop(folder, name[: -len(".airlock")], "bundle", [folder / name])
                elif name.endswith(".parts.json"):
                    yield _parts_drop(folder, name)

    def ready(self) -> Iterator[Candidate]:
        """Drops unchanged for ``settle_s`` and not handled yet.

        An incomplete one is offered once per state of its files (so its result
        file can say so), then again only when a file changes.
        """
        now = time.monotonic()
        live: set[str] = set()
        for drop in self.scan():
            ident = drop.identity()
            if ident is None:
                continue
            key = drop.key()
            live.add(key)
            first = self._seen.setdefault(key, now)
            if now - first < self.settle_s or self.memory.handled(drop) or key in self._waiting:
                continue
            if drop.kind != "bundle":
                complete = _parts_complete(drop)
                if not complete:
                    self._waiting.add(key)
                yield Candidate(drop, complete)
                continue
            found = metadata_digest(drop)
            size = ident[0][1]
            if found is None:  # not a bundle, or its front is damaged: the install says which
                yield Candidate(drop, True, size=size)
            elif size < found[1]:
                self._waiting.add(key)
                yield Candidate(drop, False, found[0], found[1], size)
            else:
                yield Candidate(drop, True, found[0], found[1], size)
        self._seen = {k: v for k, v in self._seen.items() if k in live}
        self._waiting &= live

    @staticmethod
    def incomplete(c: Candidate) -> Outcome:
        name = c.drop.path.name
        if c.drop.kind != "bundle":
            return Outcome("incomplete", f"{name} lists parts that are missing or not whole "
                           "yet; waiting for the copy to finish (copy them again if it stopped)",
                           3)
        return Outcome("incomplete", f"{name} is {c.size} bytes of at least {c.least_bytes}; "
                       "waiting for the copy to finish (copy it again if it stopped)", 3,
                       digest=c.digest)

    def skipped(self, c: Candidate) -> Outcome | None:
        """An Outcome when this release was handled before (any file, any stick), else None."""
        entry = self.memory.digests.get(c.digest or "")
        if entry is None:
            return None
        return Outcome("skipped", f"{entry.get('release') or 'this release'} was handled on "
                       f"{entry.get('time')} ({entry.get('outcome')}); not installed again",
                       0, digest=c.digest, release=entry.get("release"))

    def finish(self, drop: Drop, outcome: Outcome, device_id: str) -> list[str]:
        """Remember the outcome and write the result files; the problems met writing them."""
        if outcome.outcome != "incomplete":
            self.memory.remember(drop, outcome)
        return write_results(drop, outcome, device_id)


def _parts_drop(folder: Path, name: str) -> Drop:
    stem = name[: -len(".parts.json")]
    files = [folder / name]
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        listed = json.loads((folder / name).read_bytes()[:MAX_PARTS_MANIFEST_BYTES])
        for part in listed.get("parts", []):
            part_name = Path(str(part["name"])).name  # never a path out of the folder
            files.append(folder / part_name)
    return Drop(folder, stem.removesuffix(".airlock"), "parts", files)


def _parts_complete(drop: Drop) -> bool:
    """Every part ``NAME.parts.json`` lists is there with its listed size: the parts
    reader's own check (``airlock.format.parts.resolve_media``), which reads nothing yet."""
    try:
        return isinstance(resolve_media(drop.path), PartSet)
    except AirlockError:
        return False


def write_results(drop: Drop, outcome: Outcome, device_id: str) -> list[str]:
    """``NAME.result.json`` and ``NAME.result.txt`` beside the drop; problems, not exceptions."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    doc = {"bundle": drop.path.name, "time": now, "device_id": device_id,
           "outcome": outcome.outcome, "exit_code": outcome.exit_code,
           "message": outcome.message, "release": outcome.release, "active": outcome.active,
           "metadata_sha256": outcome.digest, **outcome.detail}
    line = _inert(f"{now} {device_id}: {outcome.outcome.upper().replace('_', ' ')}: "
                  f"{outcome.message}")
    problems = []
    json_path, txt_path = drop.result_paths()
    for path, data in ((json_path, json.dumps(doc, indent=2, sort_keys=True) + "\n"),
                       (txt_path, line + "\n")):
        try:
            write_atomic(path, data.encode())
        except OSError as e:
            problems.append(f"{path}: {e.strerror}")
    return problems


def _inert(text: str) -> str:
    """One line a terminal shows as it is: names and reasons come from the stick."""
    return "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))


def outcome_of_error(e: BaseException) -> Outcome:
    """The outcome of an install that raised ``e``."""
    from airlock.errors import (
        ExpiredError,
        HealthCheckError,
        PolicyError,
        PreconditionError,
        RejectedError,
        RollbackError,
        SignatureError,
    )

    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, HealthCheckError):
        return Outcome("failed", text, e.exit_code, remember_digest=True)
    if isinstance(e, SignatureError | ExpiredError | RollbackError | PolicyError):
        return Outcome("rejected", text, e.exit_code, remember_digest=True)
    if isinstance(e, RejectedError):
        return Outcome("rejected", text, e.exit_code)
    if isinstance(e, PreconditionError):
        return Outcome("refused", text, e.exit_code, retry_after_s=RETRY_S)
    if isinstance(e, FormatError | UsageError):
        return Outcome("rejected", text, e.exit_code)
    if isinstance(e, OSError):
        return Outcome("rejected", f"cannot read the bundle: {e.strerror or text} "
                       "(was the stick removed?); nothing changed", 3)
    code = e.exit_code if isinstance(e, AirlockError) else 1
    return Outcome("error", text, code, retry_after_s=RETRY_S)
