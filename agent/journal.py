"""The journal: an append-only, fsynced, hash-chained record of every action.

One JSON object per line. Each line carries ``prev``, the sha256 of the
previous line's bytes (64 zeros for the first), so removing, reordering or
editing a line breaks the chain and ``verify`` names the first bad line::

    journal = Journal(layout.journal)
    journal.append("switched", release="vision-3", previous="vision-2")
    journal.verify()            # -> number of lines; DigestError if the chain is broken

Appends are one ``write`` on an ``O_APPEND`` descriptor followed by fsync, so
a kill leaves whole lines; a power cut can leave a torn last line, which
recovery cuts off (``repair_tail``) and records.

Much of what is recorded comes from media nobody vouched for (the bundle's
file name, a refusal's reason quoting a member name), so every string is made
inert before it is written: control characters and lone surrogates escaped,
each string at most ``MAX_JOURNAL_TEXT_CHARS``. Every line is ASCII JSON;
one refused bundle cannot make ``status`` or ``history`` fail::

    journal.append("rejected", bundle="/media/\\udcff\\x1b[2J.airlock", reason="...")
    # -> {"bundle":"/media/\\xff\\x1b[2J.airlock",...}

Readers take an old line as it is: one that is not a JSON object becomes an
``unreadable`` entry (``verify`` still reports the chain).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airlock.console import inert, inert_data
from airlock.errors import DamagedRootError, DigestError
from airlock.files import fsync_dir
from airlock.limits import MAX_JOURNAL_TEXT_CHARS

__all__ = ["GENESIS", "Journal"]

GENESIS = "0" * 64


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _last_line(self) -> bytes | None:
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            return None
        with f:
            size = f.seek(0, os.SEEK_END)
            window = 64 * 1024
            while True:
                start = max(0, size - window)
                f.seek(start)
                data = f.read(size - start)
                body = data.rstrip(b"\n")
                cut = body.rfind(b"\n")
                if cut >= 0 or start == 0:
                    return body[cut + 1 :] or None
                window *= 4

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        last = self._last_line()
        prev = hashlib.sha256(last).hexdigest() if last else GENESIS
        entry: dict[str, Any] = inert_data(
            {"time": _now(), "event": event, **fields, "prev": prev}, MAX_JOURNAL_TEXT_CHARS)
        line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.path.parent)
        return entry

    def lines(self) -> Iterator[bytes]:
        try:
            # Without blocking: a FIFO standing where the journal belongs must not hang status.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise DamagedRootError(f"the journal {self.path} is not a file; "
                                   "run 'airlock-agent fsck --repair'")
        with os.fdopen(fd, "rb") as f:
            for raw in f:
                if raw.endswith(b"\n"):
                    yield raw[:-1]

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every whole line as a dict whose strings are inert, whatever an old line holds."""
        for raw in self.lines():
            try:
                entry = json.loads(raw)
            except (ValueError, RecursionError):
                entry = None
            if isinstance(entry, dict) and isinstance(entry.get("event"), str):
                yield inert_data(entry, MAX_JOURNAL_TEXT_CHARS)
            else:
                yield {"event": "unreadable",
                       "raw": inert(raw[:200].decode(errors="backslashreplace"))}

    def verify(self) -> int:
        """Check the whole chain; return the number of lines."""
        prev, n = GENESIS, 0
        for n, raw in enumerate(self.lines(), 1):
            try:
                entry = json.loads(raw)
            except (ValueError, RecursionError):
                raise DigestError(f"journal line {n} is not JSON (edited or damaged)") from None
            if not isinstance(entry, dict) or entry.get("prev") != prev:
                raise DigestError(
                    f"journal line {n} does not chain to line {n - 1} "
                    "(a line was edited, removed or reordered)"
                )
            prev = hashlib.sha256(raw).hexdigest()
        return n

    def repair_tail(self) -> bool:
        """Cut a torn last line (no newline) left by a power cut; True if one was cut."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        if size == 0:
            return False
        with self.path.open("rb+") as f:
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return False
            f.seek(max(0, size - 1024 * 1024))
            data = f.read()
            cut = data.rfind(b"\n")
            keep = size - len(data) + cut + 1 if cut >= 0 else 0
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        return True
