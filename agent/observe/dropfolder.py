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

Exactly once (``agent.observe.drop_memory``): a drop is remembered by the
signed identity of the release it carries (``NAME-SEQUENCE``, from metadata
verified against the device's trust) once its outcome is a property of that
release (installed, already active, failed its health check), so the same
release on another stick, under another name, with one more blank in its
JSON or after a restart of ``serve`` is not installed again. A refusal by
signature, expiry, anti-rollback or ring is remembered by the digest of
exactly the bytes refused (a carried ``root.json`` included). An outcome
that a new copy can change (a damaged or truncated file) is remembered only
for that file (name, size, mtime), and one that time can change (no space)
is retried after ``RETRY_S``. The memory is ``ROOT/drops.json``, bounded by
``MAX_DROP_MEMORY`` without forgetting a drop still on the medium. A release
an operator rolled back (``airlock-agent rollback``) is never installed from
a drop folder again (``agent.operator_rollbacks``).

Results are written beside the drop, atomically: ``NAME.result.json`` (for
machines) and ``NAME.result.txt`` (one line, for a person with any laptop).
A read-only stick is fine: the result is then only in the journal and the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from agent.observe.drop_memory import Carried, DropMemory
from airlock.errors import AirlockError, FormatError, UsageError
from airlock.files import open_on_medium, read_on_medium, write_atomic
from airlock.format.bundle import BundleReader, ShortFrontError
from airlock.format.parts import PartSet, open_media, resolve_media
from airlock.limits import (
    MAX_DROP_MEMORY,
    MAX_DROP_SCAN_ENTRIES,
    MAX_DROPS_PER_SCAN,
    MAX_PARTS,
    MAX_PARTS_MANIFEST_BYTES,
)

__all__ = ["RETRY_S", "Candidate", "Drop", "DropFolder", "DropMemory", "Outcome",
           "flags_message", "outcome_of_error", "write_results"]

#: An outcome that time may change (not enough space) is retried after this long.
RETRY_S = 600.0
_TAR_BLOCK = 512
_IN_PROGRESS = (".partial", ".tmp", ".part", ".crdownload")


@dataclass
class Outcome:
    """What became of a drop, as the result files say it."""

    outcome: str  # installed, flags_applied, already_active, skipped, failed, rejected, refused,
    #               incomplete, error
    message: str
    exit_code: int
    digest: str | None = None
    release: str | None = None
    active: str | None = None
    remember: str | None = None  # "release" or "refusal": what it is a property of (docstring)
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
                st = f.lstat()  # a link planted as a part is not followed to size it
            except (OSError, ValueError):
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
        f = open_on_medium(self.folder, self.path.name)  # what scan saw, never a link
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
        with open_on_medium(drop.folder, drop.path.name) as f:
            head = BundleReader(f).head()
    except ShortFrontError as e:
        return None, e.needed
    except (AirlockError, OSError, EOFError, ValueError):
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


class DropFolder:
    """Watched folders, and which of their drops are ready to be installed."""

    def __init__(self, folders: list[Path], settle_s: float, memory: DropMemory) -> None:
        self.folders, self.settle_s, self.memory = folders, settle_s, memory
        # key of a drop's current identity -> when it was first seen so
        self._seen: dict[str, float] = {}
        self._waiting: set[str] = set()  # incomplete drops whose result says so already
        self.overflow: set[str] = set()  # folders holding more drops than one scan takes
        self.failed: dict[str, str] = {}  # drop path -> why looking at it failed (bounded by scan)

    def scan(self) -> Iterator[Drop]:
        """The drops of every watched folder: at most ``MAX_DROPS_PER_SCAN`` in all, from at
        most ``MAX_DROP_SCAN_ENTRIES`` names per folder (a stick of a million files is read
        to that bound, and each drop stays remembered: ``MAX_DROP_MEMORY`` is larger)."""
        count = 0
        for folder in self.folders:
            names = _drop_names(folder)
            if names is None:
                continue  # the stick is not there (yet, or any more)
            if len(names) > MAX_DROPS_PER_SCAN - count:
                self.overflow.add(str(folder))  # serve says so once per folder
                names = names[: max(0, MAX_DROPS_PER_SCAN - count)]
            count += len(names)
            for name in names:
                if name.endswith(".airlock"):
                    yield Drop(folder, name[: -len(".airlock")], "bundle", [folder / name])
                else:
                    yield _parts_drop(folder, name)

    def ready(self) -> Iterator[Candidate]:
        """Drops unchanged for ``settle_s`` and not handled yet.

        An incomplete one is offered once per state of its files (so its result
        file can say so), then again only when a file changes.
        """
        now = time.monotonic()
        live: set[str] = set()
        for drop in self.scan():
            try:
                found = self._settled(drop, now, live)
            except Exception as e:  # one drop's failure is contained: noted once, never retried
                if len(self.failed) >= MAX_DROP_MEMORY:
                    self.failed.pop(next(iter(self.failed)))
                self.failed.setdefault(str(drop.path), f"{type(e).__name__}: {str(e)[:200]}")
                continue
            if found is not None:
                yield found
        self._seen = {k: v for k, v in self._seen.items() if k in live}
        self._waiting &= live

    def _settled(self, drop: Drop, now: float, live: set[str]) -> Candidate | None:
        ident = drop.identity()
        if ident is None:
            return None
        key = drop.key()
        live.add(key)
        first = self._seen.setdefault(key, now)
        if now - first < self.settle_s or self.memory.handled(drop) or key in self._waiting:
            return None
        if str(drop.path) in self.failed:
            return None
        if drop.kind != "bundle":
            complete = _parts_complete(drop)
            if not complete:
                self._waiting.add(key)
            return Candidate(drop, complete)
        found = metadata_digest(drop)
        size = ident[0][1]
        if found is None:  # not a bundle, or its front is damaged: the install says which
            return Candidate(drop, True, size=size)
        if size < found[1]:
            self._waiting.add(key)
            return Candidate(drop, False, found[0], found[1], size)
        return Candidate(drop, True, found[0], found[1], size)

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

    def skipped(self, c: Candidate, carried: Carried | None,
                rolled_back: dict[str, dict[str, Any]]) -> Outcome | None:
        """An Outcome when the release ``carried`` was handled before (any file, any stick,
        any bytes), or these very bytes were refused, or an operator rolled the release back
        (``rolled_back``: ``agent.operator_rollbacks.marked``); else None."""
        release = carried.release if carried else None
        if release is not None and release in rolled_back:
            return Outcome("skipped", f"{release} was rolled back by an operator on "
                           f"{rolled_back[release].get('time')}: the drop folder does not "
                           "install it again ('airlock-agent install' of it brings it back)",
                           0, digest=c.digest, release=release)
        entry = self.memory.known(carried)
        if entry is None:
            return None
        what = release or "this bundle (these very bytes)"
        return Outcome("skipped", f"{what} was handled on {entry.get('time')} "
                       f"({entry.get('outcome')}); not installed again",
                       0, digest=c.digest, release=release or entry.get("release"))

    def finish(self, drop: Drop, outcome: Outcome, device_id: str,
               carried: Carried | None = None) -> list[str]:
        """Remember the outcome and write the result files; the problems met writing them."""
        if outcome.outcome != "incomplete":
            self.memory.remember(drop, outcome, carried, on_medium=set(self._seen))
        return write_results(drop, outcome, device_id)


def _drop_names(folder: Path) -> list[str] | None:
    """Names of regular files directly in ``folder`` that are drops, sorted; None when
    the folder cannot be read. At most ``MAX_DROP_SCAN_ENTRIES`` entries are looked at."""
    names = []
    try:
        with os.scandir(folder) as it:
            for seen, e in enumerate(it):
                if seen >= MAX_DROP_SCAN_ENTRIES:
                    break
                name = e.name
                if (name.startswith(".") or name.endswith(_IN_PROGRESS)
                        or not name.endswith((".airlock", ".parts.json"))):
                    continue
                if e.is_file(follow_symlinks=False):
                    names.append(name)
    except OSError:
        return None
    return sorted(names)


def _parts_drop(folder: Path, name: str) -> Drop:
    """The drop of ``NAME.parts.json``: the list and the parts it names, read as the parts
    reader reads it (a bounded regular file, never through a link) and only for names; a
    list that is not one is still a drop, which the install refuses and says why."""
    stem = name[: -len(".parts.json")]
    files = [folder / name]
    try:
        listed = json.loads(read_on_medium(folder, name, MAX_PARTS_MANIFEST_BYTES))
    except (OSError, ValueError, RecursionError):
        listed = None
    entries = listed.get("parts") if isinstance(listed, dict) else None
    for part in entries[:MAX_PARTS] if isinstance(entries, list) else []:
        part_name = part.get("name") if isinstance(part, dict) else None
        if (isinstance(part_name, str) and part_name not in ("", ".", "..")
                and not any(c in part_name for c in "/\x00")):
            files.append(folder / part_name)  # a name in this folder, never a path out of it
        elif isinstance(part_name, str) and "/" in part_name and "\x00" not in part_name:
            files.append(folder / Path(part_name).name)
    return Drop(folder, stem.removesuffix(".airlock"), "parts", files)


def _parts_complete(drop: Drop) -> bool:
    """Every part ``NAME.parts.json`` lists is there with its listed size: the parts
    reader's own check (``airlock.format.parts.resolve_media``), which reads nothing yet."""
    try:
        return isinstance(resolve_media(drop.path), PartSet)
    except AirlockError:
        return False


def flags_message(result: dict[str, Any]) -> str:
    """What a drop of a flags bundle did, in the words of its result file."""
    values = ", ".join(f"{k}={json.dumps(v.get('value') if isinstance(v, dict) else v)}"
                       for k, v in sorted((result.get("flags") or {}).items()))
    return (f"applied flags {result.get('name')} (sequence {result.get('sequence')}"
            f", {result.get('percent'):g}% of devices)" + (f": {values}" if values else ""))


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
        return Outcome("failed", text, e.exit_code, remember="release")
    if isinstance(e, SignatureError | ExpiredError | RollbackError | PolicyError):
        return Outcome("rejected", text, e.exit_code, remember="refusal")
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
