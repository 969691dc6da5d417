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

Nothing grows forever: once ``journal.jsonl`` reaches
``MAX_JOURNAL_SEGMENT_BYTES`` it is renamed to a sealed segment named for the
number of its first line, ``journal-000000001.jsonl``, and a new
``journal.jsonl`` opens with a ``journal-rotated`` line that chains to the
sealed segment's last line and carries the counts of everything before it.
Only ``MAX_JOURNAL_SEGMENTS`` sealed segments are kept. Readers see one
journal across the segments; ``verify`` checks the chain across every cut
(a segment that is missing in the middle is named)::

    journal = Journal(layout.journal, segment_bytes=4096, keep_segments=2)
    [p.name for _, p in journal.segments()]   # ['journal-000000001.jsonl', ..., 'journal.jsonl']

A kill between the rename and the first line of the new file leaves no
``journal.jsonl``: the next append continues the chain from the newest
segment, so the journal still verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.faults import crash_point
from agent.journal_counts import ROTATED_EVENT, JournalCounts
from airlock.console import inert, inert_data
from airlock.errors import DamagedRootError, DigestError
from airlock.files import fsync_dir
from airlock.limits import MAX_JOURNAL_SEGMENT_BYTES, MAX_JOURNAL_SEGMENTS, MAX_JOURNAL_TEXT_CHARS

__all__ = ["GENESIS", "Journal", "segment_name"]

GENESIS = "0" * 64
_SEGMENT = re.compile(r"journal-([0-9]{9,})\.jsonl")


def segment_name(first_line: int) -> str:
    """The file a sealed segment whose first line is ``first_line`` is kept in."""
    return f"journal-{first_line:09d}.jsonl"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Journal:
    def __init__(self, path: Path, *, segment_bytes: int = MAX_JOURNAL_SEGMENT_BYTES,
                 keep_segments: int = MAX_JOURNAL_SEGMENTS) -> None:
        self.path = path
        self.segment_bytes = segment_bytes
        self.keep_segments = keep_segments
        self._counted: dict[str, int] = {}  # sealed segments never change: lines counted once

    def sealed(self) -> list[tuple[int, Path]]:
        """The sealed segments, oldest first, each with the number of its first line."""
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        found = [(int(m.group(1)), self.path.parent / n)
                 for n in names if (m := _SEGMENT.fullmatch(n))]
        return sorted(found)

    def segments(self) -> list[tuple[int, Path]]:
        """Every segment, oldest first, the active ``journal.jsonl`` last (when there is one)."""
        sealed = self.sealed()
        out = list(sealed)
        if self.path.exists() or self.path.is_symlink():
            out.append((self._next_line(sealed), self.path))
        return out

    def first_line(self) -> int:
        """The number of the oldest line still kept (1 until segments have been dropped)."""
        sealed = self.sealed()
        return sealed[0][0] if sealed else 1

    def _next_line(self, sealed: list[tuple[int, Path]]) -> int:
        """The number the active file's first line has: the line after the newest segment."""
        if not sealed:
            return 1
        start, path = sealed[-1]
        if path.name not in self._counted:
            self._counted[path.name] = sum(1 for _ in _whole_lines(path))
        return start + self._counted[path.name]

    def _last_line(self) -> bytes | None:
        last = _last_line_of(self.path)
        if last is None and not _has_lines(self.path):
            sealed = self.sealed()
            return _last_line_of(sealed[-1][1]) if sealed else None
        return last

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        size = _size(self.path)
        if size and size >= self.segment_bytes:
            self._seal()
        if not size or size >= self.segment_bytes:
            sealed = self.sealed()
            if sealed and not _has_lines(self.path):
                self._open_segment(sealed)
        return self._write(event, fields)

    def _seal(self) -> None:
        """Rename the full active file to its segment name; the next line opens a new one."""
        name = segment_name(self._next_line(self.sealed()))
        os.rename(self.path, self.path.parent / name)
        fsync_dir(self.path.parent)
        crash_point("journal-mid-rotation")

    def _open_segment(self, sealed: list[tuple[int, Path]]) -> None:
        """The first line of a new segment: where it follows on, and the counts so far;
        then the oldest segments beyond the bound go (their counts live on in that line)."""
        counts = JournalCounts()
        for raw in self.lines():
            try:
                entry = json.loads(raw)
            except (ValueError, RecursionError):
                continue
            if isinstance(entry, dict):
                counts.add(entry)
        excess = sealed[: max(0, len(sealed) - self.keep_segments)]
        self._write(ROTATED_EVENT, {"follows": sealed[-1][1].name, "line": self._next_line(sealed),
                                    "dropped": [p.name for _, p in excess],
                                    "counts": counts.to_dict()})
        for _, path in excess:
            path.unlink(missing_ok=True)
            self._counted.pop(path.name, None)
        if excess:
            fsync_dir(self.path.parent)

    def _write(self, event: str, fields: dict[str, Any]) -> dict[str, Any]:
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
        """Every whole line, oldest segment first."""
        for _, path in self.segments():
            yield from _whole_lines(path)

    def numbered_lines(self) -> Iterator[tuple[int, bytes]]:
        """Every whole line with its number, counted from the journal's first line ever."""
        for start, path in self.segments():
            yield from enumerate(_whole_lines(path), start)

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
        """Check the whole chain, across every segment; return the number of lines kept."""
        prev, n, expected = GENESIS, 0, None
        for start, path in self.segments():
            if expected is not None and start != expected:
                raise DigestError(f"journal segment {path.name} starts at line {start}, "
                                  f"but line {expected} comes next (a segment is missing)")
            line = start
            where = "" if path == self.path else f" (in {path.name})"
            for raw in _whole_lines(path):
                try:
                    entry = json.loads(raw)
                except (ValueError, RecursionError):
                    raise DigestError(f"journal line {line}{where} is not JSON "
                                      "(edited or damaged)") from None
                if (isinstance(entry, dict) and entry.get("event") == ROTATED_EVENT
                        and isinstance(entry.get("line"), int) and entry["line"] != line):
                    raise DigestError(f"journal segment {path.name} starts at line "
                                      f"{entry['line']}, but line {line} comes next "
                                      "(a segment is missing)")
                # The oldest kept line chains to a segment dropped by the bound: take its word.
                chained = isinstance(entry, dict) and (
                    entry.get("prev") == prev or (n == 0 and start > 1))
                if not chained:
                    raise DigestError(
                        f"journal line {line} does not chain to line {line - 1}{where} "
                        "(a line was edited, removed or reordered)"
                    )
                prev = hashlib.sha256(raw).hexdigest()
                n, line = n + 1, line + 1
            expected = line
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _has_lines(path: Path) -> bool:
    return _size(path) > 0


def _whole_lines(path: Path) -> Iterator[bytes]:
    try:
        # Without blocking: a FIFO standing where the journal belongs must not hang status.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DamagedRootError(f"the journal {path} is not a file; "
                               "run 'airlock-agent fsck --repair'")
    with os.fdopen(fd, "rb") as f:
        for raw in f:
            if raw.endswith(b"\n"):
                yield raw[:-1]


def _last_line_of(path: Path) -> bytes | None:
    try:
        f = path.open("rb")
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
