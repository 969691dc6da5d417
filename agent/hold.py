"""Confirm or revert: an install held until ``airlock-agent commit``, undone by itself after.

::

    airlock-agent install vision-3.airlock --hold 600   # switches; vision-2 stays armed
    airlock-agent commit                                # vision-3 is final
    # no commit within 600 s: the next agent command that takes the lock (install,
    # rollback, check, gc, fsck --repair, commit), or the serve loop, rolls back to vision-2

``ROOT/hold.json`` says what is held (``{"release": "vision-3", "previous":
"vision-2", "deadline": <unix time>, "seconds": 600, "since": ISO}``). It is
written durably *before* the switch, so a kill -9 at any point leaves either
no switch (recovery puts the old links back; the hold names a release that
is not active and is dropped) or a switched, held release the deadline will
revert. A hold acts only while ``current`` is the release it names, so a
stale file never reverts anything else; an install without ``--hold`` and a
manual rollback drop it. A damaged ``hold.json`` is dropped with a journal
entry: what it held is unknown, so nothing is reverted on its say-so.

This module is the hold's record only; going back when the deadline has passed
is a rollback (``agent.rollback.enforce_hold``), which stands on it.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone
from typing import Any

from agent.journal import Journal
from agent.layout import Layout
from agent.switch import read_link
from airlock.errors import PreconditionError, UsageError
from airlock.files import read_json, write_json
from airlock.limits import MAX_HOLD_SECONDS

__all__ = ["arm", "commit", "disarm", "held", "pending_hold"]

#: Who reverts a hold whose deadline passed, as ``status`` says it.
REVERTED_BY = {
    True: "serve reverts it at the deadline",
    False: "no serve is watching: the next agent command that takes the lock (install, "
           "rollback, check, gc, fsck --repair, commit) reverts it once the deadline passed",
    None: "serve reverts it at the deadline if it runs; otherwise the next agent command "
          "that takes the lock (install, rollback, check, gc, fsck --repair, commit) does",
}


def held(layout: Layout) -> dict[str, Any] | None:
    """The hold in force (or a stale one), None without one; a damaged one is None too."""
    try:
        raw = read_json(layout.hold)
    except (OSError, ValueError):
        return None
    ok = (isinstance(raw, dict) and isinstance(raw.get("release"), str)
          and isinstance(raw.get("deadline"), (int, float)))
    return raw if ok else None


def pending_hold(layout: Layout, *, serving: bool | None = None,
                 now: float | None = None) -> dict[str, Any] | None:
    """The hold in force, for people and machines: deadline, what comes back, how to commit.

    ``serving``: True inside ``serve`` (it reverts at the deadline), None when
    not known (the ``status`` command). None when nothing is held.
    """
    hold = held(layout)
    if hold is None or hold["release"] != read_link(layout, "current"):
        return None  # stale: it acts only while current is the release it names
    now = time.time() if now is None else now
    deadline = float(hold["deadline"])
    left = deadline - now
    return {
        "release": hold["release"], "previous": hold.get("previous"),
        "since": hold.get("since"), "seconds": hold.get("seconds"),
        "deadline": datetime.fromtimestamp(deadline, timezone.utc).isoformat(timespec="seconds"),
        "deadline_unix": deadline, "seconds_left": max(0, round(left)),
        "overdue": left <= 0,
        "comes_back": hold.get("previous"),
        "commit": "airlock-agent commit",
        "reverted_by": ("serve" if serving else "next-command" if serving is False
                        else "serve-or-next-command"),
        "reverts": REVERTED_BY[serving],
    }


def arm(layout: Layout, journal: Journal, release: str, previous: str | None,
        seconds: float) -> None:
    """Before the switch: hold ``release`` for ``seconds``, ``previous`` armed to come back."""
    if not 0 < seconds <= MAX_HOLD_SECONDS:
        raise UsageError(f"--hold must be 1 to {MAX_HOLD_SECONDS} seconds, not {seconds:g}")
    if previous is None:
        raise PreconditionError("--hold needs a release to go back to; none is active yet")
    write_json(layout.hold, {
        "release": release, "previous": previous, "seconds": seconds,
        "deadline": time.time() + seconds,
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    journal.append("hold-armed", release=release, previous=previous, seconds=seconds)


def disarm(layout: Layout) -> None:
    with contextlib.suppress(FileNotFoundError):
        layout.hold.unlink()


def commit(layout: Layout) -> dict[str, Any]:
    """Make the held release final (the caller holds the lock and has enforced deadlines)."""
    hold = held(layout)
    current = read_link(layout, "current")
    if hold is None or hold["release"] != current:
        disarm(layout)
        raise PreconditionError(f"nothing is held: {current or 'no release'} is active and "
                                "already final (a hold that ran out has been reverted; see "
                                "'airlock-agent history')")
    disarm(layout)
    Journal(layout.journal).append("committed", release=current,
                                   held_for=round(time.time() - hold["deadline"]
                                                  + float(hold.get("seconds", 0)), 1))
    return {"committed": current, "previous": read_link(layout, "previous")}
