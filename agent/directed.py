"""A directed device: it installs only what a signed visit names for its own id.

``airlock-agent init --directed`` writes ``ROOT/trust/visit.json`` (``{"directed":
true, "sequence": 0}``); from then on every install needs a *visit*
(``keys.visit``, made by ``airlock direct``) that a director signer of the
trust root signed, that has not expired (judged at the time floor's
``max(clock, floor)``, ``agent.timefloor``), that names this device's id, and
whose sequence is not older than the last visit the device followed (a
replayed older visit is refused). Visits come from the stick: ``install
--visit FILE``, else ``visit.json`` or ``*.visit.json`` beside the bundle
(the drop folder's too). A visit says one of:

* install release R: only R's bundle installs; any other is exit 3;
* stay: nothing installs (a freeze);
* roll back to R: only ``airlock-agent visit apply FILE``, to a release the
  device still holds; the anti-rollback record goes down to R's sequence, the
  one way it ever moves down.

::

    visit, instruction, label = choose(layout, stick_visits(folder))   # RejectedError: exit 3
    install(layout, stream, gate=gate(visit, instruction, label))
    follow(layout, visit, instruction, label)    # records its sequence, under the lock
    apply_visit(layout, Path("/media/usb/visit.json"))   # stay / roll back
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.journal import Journal
from agent.layout import Layout
from airlock.errors import (
    DamagedRootError,
    ExpiredError,
    RejectedError,
    UsageError,
)
from airlock.files import read_bounded, read_json, write_json
from airlock.limits import MAX_METADATA_BYTES
from keys.signed_time import format_time
from keys.visit import Instruction, Visit, verify_visit

if TYPE_CHECKING:
    # Annotation only: the release reader is not for ``status`` to load.
    from keys.release import Release

__all__ = ["VisitRefusedError", "apply_visit", "choose", "enable", "follow", "gate", "load_record", "stick_visits"]


class VisitRefusedError(RejectedError):
    """No valid visit lets this install happen (exit 3). A property of the visit, not of the
    bundle: the drop folder does not remember the bundle as refused, so it installs once a
    valid visit comes (``agent.observe.dropfolder.outcome_of_error``)."""


def enable(layout: Layout) -> None:
    """Make the device directed (``init --directed``); the caller holds the lock."""
    write_json(layout.visit_record, {"directed": True, "sequence": 0})


def load_record(layout: Layout) -> dict[str, Any] | None:
    """The visit record; None when the device is not directed. Damage is exit 5."""
    try:
        raw = read_json(layout.visit_record)
    except (OSError, ValueError):
        raw = False
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("directed") is not True \
            or type(raw.get("sequence")) is not int:
        raise DamagedRootError(f"{layout.rel(layout.visit_record)} is damaged; nothing was "
                               "changed; restore it from a backup (it records the last visit "
                               "this directed device followed)")
    return raw


def stick_visits(folder: Path | None, explicit: Path | None = None) -> list[tuple[str, bytes]]:
    """The visits to consider: ``explicit`` alone when given, else ``visit.json`` and
    ``*.visit.json`` in ``folder``; (label, bytes) each."""
    paths = [explicit] if explicit is not None else _beside(folder)
    out = []
    for p in paths:
        try:
            out.append((str(p), read_bounded(p, MAX_METADATA_BYTES)))
        except (OSError, ValueError) as e:
            if explicit is not None:
                raise UsageError(f"cannot read {p}: {getattr(e, 'strerror', None) or e}") from None
    return out


def _beside(folder: Path | None) -> list[Path]:
    try:
        return sorted(p for p in (folder.iterdir() if folder else ())
                      if p.name == "visit.json" or p.name.endswith(".visit.json"))
    except OSError:  # not a folder we may list: no visits from it
        return []


def choose(layout: Layout, visits: list[tuple[str, bytes]]) -> tuple[Visit, Instruction, str]:
    """The newest valid visit for this device, or why there is none (exit 3), journaled."""
    from agent.timefloor import explain_expired, judge_now

    record = load_record(layout)
    assert record is not None
    me = layout.load_config().device_id
    judged = judge_now(layout)
    trust = layout.load_trust()
    found: list[tuple[Visit, Instruction, str]] = []
    refusals: list[RejectedError] = []
    for label, data in visits:
        try:
            v = verify_visit(trust, data)
            if me not in v.devices:
                raise VisitRefusedError(f"visit {label} (sequence {v.sequence}) is for "
                                    f"{', '.join(sorted(v.devices))}, not this device ({me})")
            if v.sequence < record["sequence"]:
                raise VisitRefusedError(f"visit {label} (sequence {v.sequence}) is older than "
                                    f"visit {record['sequence']} this device already followed: "
                                    "a replayed visit changes nothing")
            if v.expires <= judged.now:
                raise VisitRefusedError(str(explain_expired(ExpiredError(
                    f"visit {label} (sequence {v.sequence}) expired at "
                    f"{format_time(v.expires)} (judged at {format_time(judged.now)}); ask for "
                    "a fresh one ('airlock direct')"), judged)))
            found.append((v, v.devices[me], label))
        except VisitRefusedError as e:
            refusals.append(e)
        except RejectedError as e:  # not signed by a director, not a visit: said as such
            refusals.append(VisitRefusedError(f"visit {label}: {e}"))
    if found:
        return max(found, key=lambda f: f[0].sequence)
    if len(refusals) == 1:
        error = refusals[0]
    elif refusals:
        error = VisitRefusedError(f"no valid visit for this device ({me}): "
                              + "; ".join(str(e) for e in refusals))
    else:
        error = VisitRefusedError(
            f"this device ({me}) is directed: it installs only what a signed visit names "
            "for it, and there is none beside the bundle; carry the visit.json from "
            "'airlock direct' or give --visit FILE")
    Journal(layout.journal).append("rejected", reason=str(error), error=type(error).__name__,
                                   directed=True)
    raise error


def gate(visit: Visit, instruction: Instruction, label: str) -> Callable[[Release], None]:
    """What ``agent.install.install`` asks once the release is verified: may it go on?"""
    def check(release: Release) -> None:
        if instruction.action == "install" and instruction.release == release.id \
                and instruction.sequence == release.sequence:
            return
        if instruction.action == "install":
            raise VisitRefusedError(f"visit {label} (sequence {visit.sequence}) directs this device "
                                f"to {instruction.release}, not {release.id}: not installed")
        raise VisitRefusedError(f"visit {label} (sequence {visit.sequence}) says "
                            f"{instruction.text()}: {release.id} is not installed"
                            + ("" if instruction.action == "stay" else
                               f"; 'airlock-agent visit apply {label}' follows it"))
    return check


def follow(layout: Layout, visit: Visit, instruction: Instruction, label: str) -> bool:
    """Record ``visit`` as followed (older ones are refused from now on) and raise the time
    floor to its signed time; the caller holds the lock. True when the record moved."""
    from agent.timefloor import raise_floor

    raise_floor(layout, visit.issued, f"visit {visit.sequence}")
    record = load_record(layout) or {}
    if record.get("sequence") == visit.sequence:
        return False
    write_json(layout.visit_record, {"directed": True, "sequence": visit.sequence,
                                     "followed": instruction.to_dict(),
                                     "expires": format_time(visit.expires), "visit": label})
    Journal(layout.journal).append("visit-followed", visit=visit.sequence, file=label,
                                   instruction=instruction.to_dict())
    return True


def apply_visit(layout: Layout, path: Path) -> dict[str, Any]:
    """``airlock-agent visit apply FILE``: follow a stay or roll-back visit; the caller holds
    the lock. An install visit goes with its bundle (``install --visit``)."""
    if load_record(layout) is None:
        raise UsageError("this device is not directed ('airlock-agent init --directed'): "
                         "it follows no visits")
    visit, instruction, label = choose(layout, stick_visits(None, path))
    result: dict[str, Any] = {"visit": visit.summary(), "instruction": instruction.to_dict()}
    if instruction.action == "install":
        raise UsageError(f"visit {label} directs this device to install {instruction.release}: "
                         f"'airlock-agent install BUNDLE --visit {label}'")
    if instruction.action == "rollback":
        result["rollback"] = _roll_back(layout, visit, instruction)
    result["followed"] = follow(layout, visit, instruction, label)
    return result


def _roll_back(layout: Layout, visit: Visit, instruction: Instruction) -> dict[str, Any]:
    """Switch to the release the visit names, which the device must still hold, and move the
    anti-rollback record down to its sequence: only this signed instruction does that."""
    from agent.rollback import rollback
    from agent.switch import read_link

    rid = str(instruction.release)
    if rid not in layout.release_ids():
        raise RejectedError(f"visit {visit.sequence} says roll back to {rid}, which this device "
                            "no longer holds: nothing changed; carry its bundle and a visit "
                            "that directs this device to install it")
    target = layout.load_release(rid)
    if target.sequence != instruction.sequence:
        raise RejectedError(f"visit {visit.sequence} names {rid} sequence "
                            f"{instruction.sequence}, but the release held is sequence "
                            f"{target.sequence}: nothing changed")
    done: dict[str, Any] = {"active": rid, "from": read_link(layout, "current")}
    if done["from"] != rid:
        done = rollback(layout, reason=f"visit {visit.sequence}", to=rid)
    sequences = layout.load_sequences()
    was = sequences.get(target.name)
    sequences[target.name] = target.sequence
    write_json(layout.sequences, sequences)
    Journal(layout.journal).append("anti-rollback-lowered", name=target.name, was=was,
                                   to=target.sequence, visit=visit.sequence)
    return {**done, "sequence_was": was, "sequence_now": target.sequence}
