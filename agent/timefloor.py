"""The device's time floor: the newest signed time it has seen, and the time expiry is judged at.

A device without a trusted clock (no RTC battery: 1970 after every power
cut) would otherwise take any expired release, and one whose clock runs far
ahead would refuse every valid one. The agent keeps in ``ROOT/trust/time.json``
the newest time it has *verified*: a release's signed ``issued`` time
(``keys.release``), raised once the release is installed, or a signed time
token (``keys.timetoken``, ``airlock-agent time apply``). The floor only moves
forward and is written durably (``airlock.files.write_atomic``).

Expiry is judged at :func:`judge`'s ``now``:

* the clock, when it reads between the floor and a year past it (``ok``);
* the floor, when the clock reads before it (``behind``): an expired release
  never gets in because the clock was reset;
* the clock corrected by the offset the last time token measured, when that
  lands in the plausible window and the raw clock does not (``corrected``);
* otherwise the clock (``ahead``): what it makes expire is explained by
  :func:`explain_expired` as a clock in the future, with the cure.

Example::

    judged = judge(load(layout), datetime.now(timezone.utc))
    trust.verify_head(release_json, ring=ring, now=judged.now)
    raise_floor(layout, release.issued, f"release {release.id}")
    apply_token(layout, Path("time.json").read_bytes(), "time.json")   # under the lock

A time token's own expiry is judged only when the clock is plausible: a
device with a reset clock cannot tell a fresh token from a kept one, so it
takes any token newer than its floor (docs/THREAT_MODEL.md), and a replayed
token, not newer, changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from agent.layout import Layout
from airlock.errors import DamagedRootError, ExpiredError, RejectedError
from airlock.files import read_json, write_atomic
from airlock.limits import CLOCK_AHEAD_SUSPECT_S

__all__ = ["ClockAheadError", "Judged", "TimeFloor", "apply_token", "explain_expired", "judge",
           "judge_now", "load", "raise_floor"]

_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: What a person types to cure a clock a time token can fix.
CURE = ("make a time token on the host ('airlock time-token --key time.key -o time.json'), "
        "carry it and run 'airlock-agent time apply time.json', or set the device's clock")


class ClockAheadError(ExpiredError):
    """Metadata looks expired only because the clock reads far past the floor. Exit 3."""


@dataclass(frozen=True)
class TimeFloor:
    floor: datetime | None  # None: nothing signed seen yet
    source: str = ""  # what set it: "release vision-3", "time token 2026-12-08T00:00:00Z"
    offset_s: int | None = None  # signed time minus clock when the last time token was applied


@dataclass(frozen=True)
class Judged:
    now: datetime  # the time expiry is judged at
    clock: datetime
    state: str  # ok, behind, corrected, ahead, no-floor
    floor: TimeFloor

    def to_dict(self) -> dict[str, Any]:
        f = self.floor.floor
        return {"clock": _fmt(self.clock), "floor": _fmt(f) if f else None,
                "floor_source": self.floor.source or None, "judged": _fmt(self.now),
                "state": self.state,
                "behind_s": int((f - self.clock).total_seconds()) if f and self.clock < f else 0}


def _fmt(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime(_FORMAT)


def load(layout: Layout) -> TimeFloor:
    """The floor as recorded; a damaged record is refused, never read as "no floor"."""
    try:
        raw = read_json(layout.time_floor)
    except (OSError, ValueError) as e:
        raw = e
    if raw is None:
        return TimeFloor(None)
    try:
        assert isinstance(raw, dict)
        floor = datetime.strptime(raw["floor"], _FORMAT).replace(tzinfo=timezone.utc)
        offset = raw.get("offset_s")
        assert offset is None or type(offset) is int
        return TimeFloor(floor, str(raw.get("source", "")), offset)
    except (AssertionError, KeyError, TypeError, ValueError):
        raise DamagedRootError(
            f"{layout.rel(layout.time_floor)} is damaged; nothing was changed; remove it and "
            "apply a time token ('airlock-agent time apply FILE') to set the floor again"
        ) from None


def judge(tf: TimeFloor, clock: datetime) -> Judged:
    """The time to judge expiry at, and why (module docstring)."""
    floor = tf.floor
    if floor is None:
        return Judged(clock, clock, "no-floor", tf)
    window = timedelta(seconds=CLOCK_AHEAD_SUSPECT_S)

    def plausible(t: datetime) -> bool:
        return floor <= t <= floor + window

    if plausible(clock):
        return Judged(clock, clock, "ok", tf)
    if tf.offset_s is not None:
        corrected = clock + timedelta(seconds=tf.offset_s)
        if plausible(corrected):
            return Judged(corrected, clock, "corrected", tf)
    if clock < floor:
        return Judged(floor, clock, "behind", tf)
    return Judged(clock, clock, "ahead", tf)


def judge_now(layout: Layout) -> Judged:
    return judge(load(layout), datetime.now(timezone.utc).replace(microsecond=0))


def explain_expired(e: ExpiredError, judged: Judged) -> ExpiredError:
    """An expiry caused by a clock far past the floor, said so with its cure; others as they are."""
    if judged.state != "ahead" or judged.floor.floor is None:
        return e
    return ClockAheadError(
        f"{e}: but this device's clock reads {_fmt(judged.clock)}, far past the newest signed "
        f"time it has seen ({_fmt(judged.floor.floor)}); if the clock is wrong, {CURE}")


def raise_floor(layout: Layout, when: datetime | None, source: str, *,
                clock: datetime | None = None) -> bool:
    """Move the floor up to ``when`` (verified signed time); never down. True when it moved.

    ``clock`` (a time token's apply) also records the clock's offset from the
    signed time, which :func:`judge` uses while the raw clock is implausible.
    The caller holds the agent lock.
    """
    if when is None:
        return False
    tf = load(layout)
    if tf.floor is not None and when <= tf.floor:
        return False
    record: dict[str, Any] = {"floor": _fmt(when), "source": source}
    offset = tf.offset_s
    if clock is not None:
        offset = int((when - clock).total_seconds())
    if offset is not None:
        record["offset_s"] = offset
    write_atomic(layout.time_floor, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return True


def apply_token(layout: Layout, data: bytes, label: str = "-") -> dict[str, Any]:
    """A verified time token raises the floor and records the clock's offset; the caller holds
    the lock. A token not newer than the floor changes nothing (replay)."""
    from agent.journal import Journal
    from keys.timetoken import verify_token

    journal = Journal(layout.journal)
    judged = judge_now(layout)
    try:
        token = verify_token(layout.load_trust(), data)
        if judged.state in ("ok", "no-floor") and token.expires <= judged.clock:
            raise ExpiredError(f"time token expired at {_fmt(token.expires)}; make a fresh one "
                               "('airlock time-token')")
    except RejectedError as e:
        journal.append("rejected", token=label, reason=str(e), error=type(e).__name__)
        raise
    moved = raise_floor(layout, token.time, f"time token {_fmt(token.time)}", clock=judged.clock)
    if moved:
        journal.append("time-token-applied", token=label, time=_fmt(token.time),
                       signer=token.signer, clock=_fmt(judged.clock))
    after = judge_now(layout)
    return {"applied": moved, "time": _fmt(token.time), "signer": token.signer,
            "clock": after.to_dict(),
            "note": None if moved else "not newer than the device's time floor: nothing changed"}
