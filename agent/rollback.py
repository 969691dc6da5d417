"""Manual rollback and re-checking the active release.

``rollback`` goes back to ``previous``: it health-checks it first, switches
atomically, runs its post-switch hook and probe. If ``previous`` fails, the
other installed releases are tried newest first; if none passes, nothing
changes and the error says so (exit 4)::

    result = rollback(layout)                 # {"active": "vision-2", "previous": "vision-3", ...}
    result = check(layout, rollback_on_failure=True)
"""

from __future__ import annotations

import time
from typing import Any

from agent.activation import ROLLBACK_POINTS, activate, health_check
from agent.faults import crash_point
from agent.input_contract import sample_violations
from agent.journal import Journal
from agent.layout import Layout
from agent.switch import Transaction, read_link
from airlock.errors import HealthCheckError, PreconditionError

__all__ = ["check", "rollback"]


def _candidates(layout: Layout, current: str | None, previous: str | None) -> list[str]:
    others: list[tuple[int, str]] = []
    for rid in layout.release_ids():
        if rid in (current, previous):
            continue
        try:
            others.append((layout.load_release(rid).sequence, rid))
        except Exception:
            continue
    return ([previous] if previous else []) + [rid for _, rid in sorted(others, reverse=True)]


def _described(layout: Layout, rid: str | None) -> str | None:
    """A release as status names it: ``vision 1.2.0 (sequence 2)``; its id if it cannot be read."""
    if rid is None:
        return None
    try:
        r = layout.load_release(rid)
    except Exception:  # a damaged release is still named, by its id
        return rid
    return f"{r.name} {r.version} (sequence {r.sequence})"


def rollback(layout: Layout, *, reason: str = "manual") -> dict[str, Any]:
    journal = Journal(layout.journal)
    current = read_link(layout, "current")
    previous = read_link(layout, "previous")
    candidates = _candidates(layout, current, previous)
    if not candidates:
        raise PreconditionError(
            f"there is no other installed release to roll back to; {current or 'nothing'} "
            "stays active"
        )
    journal.append("rollback-started", current=current, previous=previous, reason=reason)
    failures: list[str] = []
    for rid in candidates:
        release = layout.load_release(rid)
        health_start = time.monotonic()
        report = health_check(layout, journal, release)
        health_s = time.monotonic() - health_start
        if not report.ok:
            failures.append(f"{rid}: {report.reason}")
            continue
        crash_point("rollback-before-switch")
        start = time.monotonic()
        tx = Transaction.begin(layout, "rollback", rid)
        outcome = activate(layout, journal, tx, release, previous=current, points=ROLLBACK_POINTS)
        tx.commit()
        if outcome.ok:
            seconds = round(time.monotonic() - start, 4)
            journal.append("rolled-back", release=current, to=rid, reason=reason)
            from agent.hold import disarm

            disarm(layout)  # whatever was held is left now
            return {"active": rid, "previous": read_link(layout, "previous"), "from": current,
                    "from_release": _described(layout, current),
                    "name": release.name, "version": release.version,
                    "sequence": release.sequence, "health": report.to_dict(),
                    "health_s": round(health_s, 3), "switch_s": outcome.switch_s,
                    "seconds_without_health": seconds}
        failures.append(f"{rid}: {outcome.reason}")
    journal.append("rollback-failed", current=current, reasons=failures)
    raise HealthCheckError(
        f"no release to roll back to passes its checks ({'; '.join(failures)}); "
        f"{current or 'nothing'} stays active"
    )


def check(layout: Layout, *, rollback_on_failure: bool = False) -> dict[str, Any]:
    current = read_link(layout, "current")
    if current is None:
        raise PreconditionError("no release is active; install one with 'airlock-agent install'")
    journal = Journal(layout.journal)
    release = layout.load_release(current)
    report = health_check(layout, journal, release)
    result: dict[str, Any] = {"release": current, "name": release.name,
                              "version": release.version, "sequence": release.sequence,
                              "ok": report.ok, "reason": report.reason,
                              "health": report.to_dict(), "rolled_back_to": None,
                              "inputs": sample_violations(layout, release)}
    if report.ok:
        return result
    if not rollback_on_failure:
        raise HealthCheckError(
            f"health check of active release {current} failed: {report.reason}; run "
            "'airlock-agent rollback' or 'check --rollback-on-failure'"
        )
    done = rollback(layout, reason=f"check failed: {report.reason}")
    raise HealthCheckError(
        f"health check of {current} failed: {report.reason}; rolled back to {done['active']}"
    )
