"""Manual rollback and re-checking the active release.

``rollback`` goes back to ``previous`` at once: it switches atomically and
runs its post-switch hook and probe. It does not run the model health check
again, because nothing it checks can have changed: ``previous`` passed that
check when it was installed (its ``health.json`` says so) and its files are
hard links to content-addressed blobs, so they are the very bytes that passed
(a few ``stat`` calls confirm each file is its store blob, with the signed
length). So a rollback costs the same for a 1 MiB and a 10 GiB model. When
either is not so (no passing check recorded, a model file that is not its
blob), or when asked (``check=True``, ``rollback --check``: after the
device's runtime setup changed, say), the target is health-checked before
the switch, as an install does. If ``previous`` fails, the other installed
releases are tried newest first; if none passes, nothing changes and the
error says so (exit 4)::

    result = rollback(layout)                 # {"active": "vision-2", "checked": False, ...}
    result = rollback(layout, check=True)     # health-checks vision-2 first
    result = check(layout, rollback_on_failure=True)
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from agent.activation import ROLLBACK_POINTS, activate, health_check
from agent.faults import crash_point
from agent.hold import disarm, held
from agent.journal import Journal
from agent.layout import Layout
from agent.switch import Transaction, read_link
from airlock.errors import AirlockError, HealthCheckError, PreconditionError
from airlock.files import read_json
from airlock.format.oci import blob_path

if TYPE_CHECKING:
    from keys.release import Release

__all__ = ["check", "enforce_hold", "recorded_pass", "rollback"]


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


def _sequence(layout: Layout, rid: str | None) -> int | None:
    """The sequence of release ``rid``; None when there is none or it cannot be read."""
    if rid is None:
        return None
    try:
        return layout.load_release(rid).sequence
    except Exception:  # a damaged release: the words fall back to "rolled back"
        return None


def recorded_pass(layout: Layout, release: Release) -> tuple[dict[str, Any] | None, str]:
    """The passing health record of ``release`` if it still holds; else (None, why not).

    It holds when ``health.json`` records a passing check and every file the
    check reads is still its store blob (same inode) with its signed length:
    then the files are the bytes that passed, and only a change of the
    device's runtime setup (``rollback --check``) could change the verdict.
    Only ``stat``: no byte is read, whatever the size of the models.
    """
    rdir = layout.release_dir(release.id)
    try:
        record = read_json(rdir / "health.json")
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("ok") is not True:
        return None, "no passing health check is recorded for it"
    for m in release.models:
        for name, digest in m.linked_files():
            info = release.files.get(blob_path(digest))
            try:
                st = os.lstat(rdir / "models" / m.name / name)
                blob = os.stat(layout.blob(digest))
            except OSError:
                return None, f"models/{m.name}/{name} or its blob is missing"
            if (st.st_ino, st.st_dev) != (blob.st_ino, blob.st_dev) or (
                    info is not None and st.st_size != info.length):
                return None, f"models/{m.name}/{name} is no longer its store blob"
    return record, ""


def rollback(layout: Layout, *, reason: str = "manual", check: bool = False,
             operator: bool = False, to: str | None = None) -> dict[str, Any]:
    """Switch back to ``previous`` (else the newest other release that qualifies).

    ``check``: health-check the target before switching even when its passing
    check still holds (see :func:`recorded_pass`). ``operator``: a person asked
    for it (``airlock-agent rollback``, not a failed check or an expired hold):
    the release left is journaled as ``operator-rollback`` and marked, so the
    drop folder never installs it again (``agent.operator_rollbacks``). ``to``: that
    release only (a directed visit's roll back, ``agent.directed``).
    """
    journal = Journal(layout.journal)
    current = read_link(layout, "current")
    previous = read_link(layout, "previous")
    candidates = [to] if to is not None else _candidates(layout, current, previous)
    if not candidates:
        raise PreconditionError(
            f"there is no other installed release to roll back to; {current or 'nothing'} "
            "stays active"
        )
    journal.append("rollback-started", current=current, previous=previous, reason=reason,
                   check=check)
    failures: list[str] = []
    for rid in candidates:
        release = layout.load_release(rid)
        record, why_check = (None, "asked to") if check else recorded_pass(layout, release)
        health_start = time.monotonic()
        if record is None:
            report = health_check(layout, journal, release)
            if not report.ok:
                failures.append(f"{rid}: {report.reason}")
                continue
            health = {"checked": True, "why": why_check, "ok": True, "time": None,
                      "report": report.to_dict()}
        else:
            health = {"checked": False, "why": "it passed when installed and its files are "
                      "unchanged", "ok": True, "time": record.get("time"),
                      "report": record.get("report")}
        health_s = time.monotonic() - health_start
        crash_point("rollback-before-switch")
        start = time.monotonic()
        tx = Transaction.begin(layout, "rollback", rid)
        outcome = activate(layout, journal, tx, release, previous=current, points=ROLLBACK_POINTS)
        tx.commit()
        if outcome.ok:
            seconds = round(time.monotonic() - start, 4)
            journal.append("rolled-back", release=current, to=rid, reason=reason,
                           checked=health["checked"])
            disarm(layout)  # whatever was held is left now
            if operator and current is not None:
                _mark_left(layout, journal, current)
            return {"active": rid, "previous": read_link(layout, "previous"), "from": current,
                    "from_release": _described(layout, current),
                    "from_sequence": _sequence(layout, current),
                    "name": release.name, "version": release.version,
                    "sequence": release.sequence, "checked": health["checked"],
                    "check_reason": health["why"], "health_time": health["time"],
                    "health": health["report"], "health_s": round(health_s, 3),
                    "switch_s": outcome.switch_s, "seconds_without_health": seconds}
        failures.append(f"{rid}: {outcome.reason}")
    journal.append("rollback-failed", current=current, reasons=failures)
    raise HealthCheckError(
        f"no release to roll back to passes its checks ({'; '.join(failures)}); "
        f"{current or 'nothing'} stays active"
    )


def _mark_left(layout: Layout, journal: Journal, release_id: str) -> None:
    from agent.operator_rollbacks import mark

    try:
        sequence: int | None = layout.load_release(release_id).sequence
    except Exception:  # a damaged release is still marked, by its id
        sequence = None
    mark(layout, release_id, sequence=sequence)
    journal.append("operator-rollback", release=release_id, sequence=sequence,
                   note="the drop folder will not install it again; an explicit "
                   "'airlock-agent install' brings it back")


def enforce_hold(layout: Layout) -> dict[str, Any] | None:
    """Revert a held release whose deadline passed (the caller holds the lock); what it did.

    The hold's record is ``agent.hold``; ``None`` when nothing was due.
    """
    path = layout.hold
    if not path.exists():
        return None
    journal = Journal(layout.journal)
    hold = held(layout)
    current = read_link(layout, "current")
    if hold is None:
        disarm(layout)
        journal.append("hold-dropped", reason="hold.json is damaged; nothing reverted")
        return None
    if hold["release"] != current:
        disarm(layout)  # the switch never happened, or the release was left since
        return None
    if time.time() < hold["deadline"]:
        return None
    reason = (f"hold expired: {current} was not committed within {hold.get('seconds')} s "
              f"(since {hold.get('since')})")
    journal.append("hold-expired", release=current, previous=hold.get("previous"))
    try:
        result = rollback(layout, reason=reason)
    except AirlockError as e:
        disarm(layout)
        journal.append("hold-revert-failed", release=current, reason=str(e))
        return {"reverted": False, "release": current, "reason": f"{reason}; {e}"}
    disarm(layout)
    return {"reverted": True, "release": current, "to": result["active"], "reason": reason}


def check(layout: Layout, *, rollback_on_failure: bool = False) -> dict[str, Any]:
    from agent.observe.input_contract import sample_violations  # numpy: only a check reads samples

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
            f"active release {current}: {report.reason}; run "
            "'airlock-agent rollback' or 'check --rollback-on-failure'"
        )
    # The active release just failed on this device as it is now: its cause (a changed
    # runtime, a driver) may fail the target too, so the target is checked before the switch.
    done = rollback(layout, reason=f"check failed: {report.reason}", check=True)
    raise HealthCheckError(
        f"release {current}: {report.reason}; rolled back to {done['active']}"
    )
