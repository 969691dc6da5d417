"""Counting what the journal says happened: installs, rollbacks and rejected bundles.

The journal is append-only, so counts read from it only ever grow: they are
true Prometheus counters that survive a restart of ``serve`` and include what
a manual ``airlock-agent install`` did. They keep counting right when the
journal drops its oldest segments: each segment opens with the counts of
everything before it (``agent.journal_counts``). A tally reads only the lines
added since it last looked::

    tally = JournalTally(layout.journal)
    tally.update()                       # reads new lines only
    tally.installs["installed"], tally.rejected["signature"], tally.rollbacks[("ok", "check")]

The outcomes and reasons are ``agent.journal_counts``'s.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from agent.journal import Journal
from agent.journal_counts import REJECT_REASONS, JournalCounts

__all__ = ["REJECT_REASONS", "JournalTally"]


class JournalTally:
    """Counters over a journal's segments, read incrementally from the last line seen."""

    def __init__(self, path: Path) -> None:
        self.journal = Journal(path)
        self._reset()

    def _reset(self) -> None:
        self.counts = JournalCounts()
        self.next_line = 1  # the first line not yet counted
        self.segment = 0  # first line of the segment being read, and the byte offset in it
        self.offset = 0

    @property
    def installs(self) -> Counter[str]:
        return self.counts.installs

    @property
    def rejected(self) -> Counter[str]:
        return self.counts.rejected

    @property
    def rollbacks(self) -> Counter[tuple[str, str]]:
        return self.counts.rollbacks

    def update(self) -> None:
        segments = self.journal.segments()
        if segments and self._shrunk(*segments[-1]):
            self._reset()  # replaced by a smaller journal: count again
        for start, path in segments:
            if start < self.segment:
                continue
            try:
                f = path.open("rb")
            except FileNotFoundError:
                continue  # sealed or dropped between the listing and now; the next look sees it
            with f:
                line = max(start, self.next_line) if start == self.segment else start
                if start == self.segment:
                    f.seek(self.offset)
                else:
                    self.segment, self.offset = start, 0
                for raw in f:
                    if not raw.endswith(b"\n"):
                        break  # a line still being written; read it next time
                    self.offset += len(raw)
                    line += 1
                    self._count(raw)
                self.next_line = line

    def _shrunk(self, start: int, path: Path) -> bool:
        if start != self.segment:
            return start < self.segment
        try:
            return path.stat().st_size < self.offset
        except FileNotFoundError:
            return False

    def _count(self, raw: bytes) -> None:
        try:
            entry = json.loads(raw)
        except ValueError:
            return
        if isinstance(entry, dict):
            self.counts.add(entry)
