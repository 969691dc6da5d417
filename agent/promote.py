"""Promote the staged challenger: the switch an ``install --no-switch`` left for later.

::

    result = promote(layout)                 # health-checked again, then switched
    result = promote(layout, hold=600)       # held: 'airlock-agent commit' keeps it

The caller holds the lock and has recovered (``agent.operations.promote_run``,
the install envelope). The challenger is health-checked again against the
release running now (goldens, budgets, evaluation with ``min_delta``; its
shadow comparison is recorded, not judged: the operator, or ``serve
--auto-promote`` over several runs, has decided), then switched to as an
install is: hold armed first, ``current`` switched, post-switch hook, probe;
a failure puts the links back (exit 4) and the challenger stays staged.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from agent.activation import activate, health_check
from agent.challenger import drop, staged
from agent.hold import arm, disarm, held
from agent.journal import Journal
from agent.layout import Layout
from agent.switch import Transaction, read_link
from airlock.errors import HealthCheckError, PreconditionError

__all__ = ["promote"]


def promote(layout: Layout, *, hold: float | None = None, reason: str = "operator") -> dict[str, Any]:
    record = staged(layout)
    if record is None:
        raise PreconditionError("no challenger is staged; 'airlock-agent install BUNDLE "
                                "--no-switch' stages one")
    rid = str(record["release"])
    current = read_link(layout, "current")
    if rid == current:
        drop(layout)
        raise PreconditionError(f"{rid} is already active; nothing to promote")
    journal = Journal(layout.journal)
    release = layout.load_release(rid)
    journal.append("promote-started", release=rid, replacing=current, reason=reason)
    start = time.monotonic()
    report = health_check(layout, journal, release, replacing=current, shadow=True,
                          judge_shadow=False)
    health_s = round(time.monotonic() - start, 3)
    if not report.ok:
        journal.append("promote-failed", release=rid, reason=report.reason, active=current)
        raise HealthCheckError(f"{rid} not promoted: {report.reason}; "
                               f"{current or 'no release'} stays active")
    tx = Transaction.begin(layout, "promote", rid)
    if hold is not None:
        arm(layout, journal, rid, current, hold)
    else:
        disarm(layout)
    outcome = activate(layout, journal, tx, release, previous=current)
    tx.commit()
    if not outcome.ok:
        disarm(layout)
        journal.append("promote-failed", release=rid, reason=outcome.reason, active=current)
        raise HealthCheckError(f"{rid} failed after the switch: {outcome.reason}; "
                               f"{current or 'no release'} is active again")
    drop(layout)
    journal.append("promoted", release=rid, previous=current, reason=reason)
    h = held(layout) if hold is not None else None
    until = (datetime.fromtimestamp(h["deadline"], timezone.utc).isoformat(timespec="seconds")
             if h else None)
    return {"release": rid, "active": read_link(layout, "current"), "previous": current,
            "name": release.name, "version": release.version, "sequence": release.sequence,
            "health": report.to_dict(), "health_s": health_s,
            "activation": outcome.to_dict(), "reason": reason,
            "held_until": until}
