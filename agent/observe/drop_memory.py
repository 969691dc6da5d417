"""What ``serve``'s drop folder already did, keyed by what a drop carries once verified.

A drop is remembered three ways in ``ROOT/drops.json``::

    carried = read_carried(layout, drop)      # Carried(release="vision-2", sequence=2, bytes_key=…)
    memory.known(carried)                     # the entry of that release or of those exact bytes
    memory.remember(drop, outcome, carried, on_medium={drop.key()})

* ``releases``: by the signed identity of the release (``NAME-SEQUENCE``,
  read from metadata that verified against the device's trust root) once the
  outcome is a property of that release (installed, already active, failed
  its health check). A copy with one extra blank in its JSON, under another
  name or on another stick, is the same release;
* ``refusals``: by the sha256 of exactly the bytes refused (a carried
  ``root.json`` and the release metadata) and of the device's trust (its root
  and ring), so a bogus ``root.json`` paired with the next release's genuine
  metadata never makes that release "already rejected";
* ``files``: by folder, name, size and mtime, for everything else (a new copy
  is looked at again; ``retry_at`` for outcomes time may change).

Each table holds at most ``MAX_DROP_MEMORY`` entries, the oldest forgotten
first, but never one whose drop is still on a watched medium: forgetting it
would install it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from airlock.errors import AirlockError
from airlock.files import read_json, write_json
from airlock.limits import MAX_DROP_MEMORY

if TYPE_CHECKING:
    from agent.layout import Layout


class DropRef(Protocol):
    """What the memory needs of a drop (``agent.observe.dropfolder.Drop`` is one); named
    here rather than imported, so the drop folder and its memory do not import each other."""

    @property
    def path(self) -> Path: ...

    def key(self) -> str: ...

    def open(self) -> tuple[IO[bytes], int]: ...


class OutcomeRef(Protocol):
    """What the memory needs of an outcome (``agent.observe.dropfolder.Outcome``)."""

    @property
    def outcome(self) -> str: ...

    @property
    def release(self) -> str | None: ...

    @property
    def retry_after_s(self) -> float | None: ...

    @property
    def remember(self) -> str | None: ...

__all__ = ["Carried", "DropMemory", "read_carried"]

_TABLES = ("releases", "refusals", "files")


@dataclass(frozen=True)
class Carried:
    """What a drop carries: its verified release, or None; and the key of its exact bytes."""

    release: str | None  # NAME-SEQUENCE, only from metadata that verified
    sequence: int | None
    bytes_key: str  # sha256 of the trust it was judged by, root.json and release.json


def read_carried(layout: Layout, drop: DropRef) -> Carried | None:
    """The drop's signed metadata verified as an install would (signature, threshold,
    expiry, ring, a carried root); None when its front is not a bundle's (the install
    says why). Reads only the front; nothing here decides an install."""
    from airlock.format.bundle import BundleReader

    try:
        stream, _ = drop.open()
        with stream:
            head = BundleReader(stream).head()
        trust = layout.load_trust()
        ring = layout.load_config().ring
        trust_bytes = layout.trust_root.read_bytes()
    except (AirlockError, OSError, EOFError, ValueError):
        return None
    h = hashlib.sha256()
    for part in (trust_bytes, (ring or "").encode(), head.root_json or b"", head.release_json):
        h.update(len(part).to_bytes(8, "big") + part)  # unambiguous: each part with its length
    try:
        _, verified = trust.verify_head(head.release_json, head.root_json, ring=ring)
    except (AirlockError, ValueError):
        return Carried(None, None, h.hexdigest())
    release = verified.release
    return Carried(release.id, release.sequence, h.hexdigest())


class DropMemory:
    """What ``serve`` already did with drops, persisted in ``ROOT/drops.json``."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        raw = data or {}
        self.tables: dict[str, dict[str, dict[str, Any]]] = {
            t: {k: v for k, v in (raw.get(t) or {}).items() if isinstance(v, dict)}
            if isinstance(raw.get(t), dict) else {} for t in _TABLES}

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.tables["files"]

    @classmethod
    def load(cls, path: Path) -> DropMemory:
        try:
            raw = read_json(path)
        except (OSError, ValueError):
            raw = None  # unreadable memory: at worst a bundle is offered to install again
        return cls(path, raw if isinstance(raw, dict) else None)

    def save(self, on_medium: Collection[str] = ()) -> None:
        """Write the memory, forgetting the oldest entries over the bound but none whose
        drop is on a watched medium now (``on_medium``: file keys seen by the last scan)."""
        kept_files = {k for k in on_medium if k in self.files}
        kept = {"files": kept_files,
                "releases": {str(self.files[k].get("release")) for k in kept_files},
                "refusals": {str(self.files[k].get("bytes_key")) for k in kept_files}}
        for name, table in self.tables.items():
            old = sorted((k for k in table if k not in kept[name]),
                         key=lambda k: str(table[k].get("time")))
            for k in old[: max(0, len(table) - MAX_DROP_MEMORY)]:
                del table[k]
        with contextlib.suppress(OSError):  # a read-only ROOT forgets across restarts
            write_json(self.path, self.tables)

    def remember(self, drop: DropRef, outcome: OutcomeRef, carried: Carried | None = None,
                 on_medium: Collection[str] = ()) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        release = outcome.release or (carried.release if carried else None)
        entry: dict[str, Any] = {"time": now, "outcome": outcome.outcome, "release": release,
                                 "drop": str(drop.path), "retry_at": None,
                                 "bytes_key": carried.bytes_key if carried else None}
        if outcome.retry_after_s is not None:
            entry["retry_at"] = time.time() + outcome.retry_after_s
        self.files[drop.key()] = entry
        if outcome.remember == "release" and release and carried and carried.release == release:
            self.tables["releases"][release] = entry
        elif outcome.remember == "refusal" and carried is not None:
            self.tables["refusals"][carried.bytes_key] = entry
        self.save({*on_medium, drop.key()})

    def handled(self, drop: DropRef) -> bool:
        entry = self.files.get(drop.key())
        if entry is None:
            return False
        retry_at = entry.get("retry_at")
        return not (isinstance(retry_at, int | float) and time.time() >= retry_at)

    def known(self, carried: Carried | None) -> dict[str, Any] | None:
        """The entry of the release ``carried`` is, or of its exact bytes refused before."""
        if carried is None:
            return None
        if carried.release is not None and carried.release in self.tables["releases"]:
            return self.tables["releases"][carried.release]
        return self.tables["refusals"].get(carried.bytes_key)
