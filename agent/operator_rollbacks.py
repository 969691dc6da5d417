"""Releases an operator rolled back: the drop folder never installs them again.

An explicit ``airlock-agent rollback`` is a person's decision that a release
must not run. A failed scheduled check or an expired hold is not (the device
decided, and the drop folder's memory already keeps it from looping). So
only the rollback command marks the release it left, in
``ROOT/rolled-back.json``; ``serve``'s drop folder refuses a marked release
whatever the bytes of the copy (another name, another stick, one extra blank
in its JSON), and only an explicit ``airlock-agent install`` of it clears
the mark::

    mark(layout, "vision-2", sequence=2)        # by agent.rollback, operator=True
    marked(layout).get("vision-2")              # {"time": "...", "sequence": 2}
    clear(layout, "vision-2")                   # by an explicit install of vision-2

The file is written under the agent lock, atomically; a damaged one reads as
empty (a mark lost, never a release refused for ever), bounded by
``MAX_OPERATOR_ROLLBACKS``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from agent.layout import Layout
from airlock.errors import RejectedError
from airlock.files import read_json, write_json
from airlock.limits import MAX_OPERATOR_ROLLBACKS

__all__ = ["OperatorRolledBackError", "clear", "mark", "marked"]


class OperatorRolledBackError(RejectedError):
    """An unattended install of a release an operator rolled back. Exit code 3."""


def marked(layout: Layout) -> dict[str, dict[str, Any]]:
    """Release id -> ``{"time", "sequence"}`` of every release an operator rolled back."""
    try:
        raw = read_json(layout.operator_rollbacks)
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in list(raw.items())[:MAX_OPERATOR_ROLLBACKS]
            if isinstance(k, str) and isinstance(v, dict)}


def mark(layout: Layout, release_id: str, *, sequence: int | None) -> None:
    """Remember that an operator rolled ``release_id`` back (the caller holds the lock)."""
    marks = marked(layout)
    marks.pop(release_id, None)
    marks[release_id] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "sequence": sequence}
    while len(marks) > MAX_OPERATOR_ROLLBACKS:
        marks.pop(next(iter(marks)))  # the oldest mark goes first (insertion order)
    write_json(layout.operator_rollbacks, marks)


def clear(layout: Layout, release_id: str) -> bool:
    """Forget the mark of ``release_id`` (an explicit install); whether there was one."""
    marks = marked(layout)
    if marks.pop(release_id, None) is None:
        return False
    write_json(layout.operator_rollbacks, marks)
    return True
