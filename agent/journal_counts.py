"""What the journal's lines add up to: installs, rejections and rollbacks, by outcome.

The journal keeps only its newest segments, so the counts of what came before
travel in the ``journal-rotated`` line that opens each segment; a reader that
meets one takes its counts as the truth up to that line::

    counts = JournalCounts()
    for entry in entries:
        counts.add(entry)
    counts.installs["installed"], counts.to_dict()
    JournalCounts.from_dict(counts.to_dict())   # the same counts

Outcomes: an install is ``installed``, ``already_active``, ``failed`` (health,
hook, probe, image delivery or interruption: the old release stays),
``rejected`` (nothing installed) or ``refused`` (no space). A rejection's
reason is its error class (``signature``, ``expired``, ``rollback``,
``policy``, ``digest``, ``format``, ``other``). A rollback is ``ok`` or
``failed``, triggered by ``manual``, ``check`` (a failed scheduled or manual
re-check) or ``install`` (a failed post-switch hook or probe).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["REJECT_REASONS", "ROTATED_EVENT", "JournalCounts"]

#: The event of the line that opens every segment after the first.
ROTATED_EVENT = "journal-rotated"

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


class JournalCounts:
    """Counters over journal entries, fed one entry at a time."""

    def __init__(self) -> None:
        self.installs: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.rollbacks: Counter[tuple[str, str]] = Counter()
        self._trigger = "manual"  # of the rollback in progress

    def add(self, e: dict[str, Any]) -> None:
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
        elif event == ROTATED_EVENT and isinstance(e.get("counts"), dict):
            # Everything before this line, dropped segments included.
            carried = JournalCounts.from_dict(e["counts"])
            self.installs, self.rejected, self.rollbacks = (
                carried.installs, carried.rejected, carried.rollbacks)

    def to_dict(self) -> dict[str, Any]:
        return {"installs": dict(self.installs), "rejected": dict(self.rejected),
                "rollbacks": [{"result": r, "trigger": t, "count": n}
                              for (r, t), n in sorted(self.rollbacks.items())]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JournalCounts:
        """Counts a line recorded; what is not a count is left out (an old line is taken as it is)."""
        counts = cls()
        for name, target in (("installs", counts.installs), ("rejected", counts.rejected)):
            got = raw.get(name)
            if isinstance(got, dict):
                target.update({str(k): v for k, v in got.items()
                               if isinstance(v, int) and not isinstance(v, bool) and v > 0})
        rollbacks = raw.get("rollbacks")
        for r in rollbacks if isinstance(rollbacks, list) else []:
            if isinstance(r, dict) and isinstance(r.get("count"), int) and r["count"] > 0:
                counts.rollbacks[(str(r.get("result")), str(r.get("trigger")))] += r["count"]
        return counts


def _trigger(reason: object) -> str:
    text = str(reason or "")
    return "manual" if text == "manual" else "check" if text.startswith("check failed") else "install"
