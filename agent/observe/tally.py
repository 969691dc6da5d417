"""Counting what the journal says happened: installs, rollbacks and rejected bundles.

The journal is append-only, so counts read from it only ever grow: they are
true Prometheus counters that survive a restart of ``serve`` and include what
a manual ``airlock-agent install`` did. A tally reads only the lines added
since it last looked::

    tally = JournalTally(layout.journal)
    tally.update()                       # reads new lines only
    tally.installs["installed"], tally.rejected["signature"], tally.rollbacks[("ok", "check")]

Outcomes: an install is ``installed``, ``already_active``, ``failed`` (health,
hook, probe, image delivery or interruption: the old release stays),
``rejected`` (nothing installed) or ``refused`` (no space). A rejection's
reason is its error class (``signature``, ``expired``, ``rollback``,
``policy``, ``digest``, ``format``, ``other``). A rollback is ``ok`` or
``failed``, triggered by ``manual``, ``check`` (a failed scheduled or manual
re-check) or ``install`` (a failed post-switch hook or probe).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["REJECT_REASONS", "JournalTally"]

#: Journal ``error`` class -> the reason label of a rejected bundle.
REJECT_REASONS = {
    "SignatureError": "signature",
    "ExpiredError": "expired",
    "RollbackError": "rollback",
    "PolicyError": "policy",
    "DigestError": "digest",
    "FormatError": "format",
}
_INSTALL_EVENTS = {"installed": "installed", "already-active": "already_active",
                   "install-failed": "failed", "rejected": "rejected", "refused": "refused"}


class JournalTally:
    """Counters over a journal file, read incrementally from the last offset seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self.installs: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.rollbacks: Counter[tuple[str, str]] = Counter()
        self._trigger = "manual"  # of the rollback in progress

    def update(self) -> None:
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            return
        with f:
            if f.seek(0, 2) < self.offset:  # replaced by a smaller file: count again
                self._reset()
            f.seek(self.offset)
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a line still being written; read it next time
                self.offset += len(raw)
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    self._count(entry)

    def _count(self, e: dict[str, Any]) -> None:
        event = e.get("event")
        if event in _INSTALL_EVENTS:
            self.installs[_INSTALL_EVENTS[str(event)]] += 1
            if event == "rejected":
                self.rejected[REJECT_REASONS.get(str(e.get("error")), "other")] += 1
        elif event == "rollback-started":
            self._trigger = _trigger(e.get("reason"))
        elif event == "rolled-back":
            self.rollbacks[("ok", _trigger(e.get("reason")))] += 1
        elif event == "rollback-failed":
            self.rollbacks[("failed", self._trigger)] += 1


def _trigger(reason: object) -> str:
    text = str(reason or "")
    return "manual" if text == "manual" else "check" if text.startswith("check failed") else "install"
