"""Signed time tokens: "it is now T", for devices without a trusted clock.

A time token is TUF ``targets`` metadata with no targets, ``airlock_kind``
``"time"`` and a section ``airlock_time`` holding the signed time; its TUF
``expires`` makes it short-lived. It is signed by a threshold of the keys of
one *time signer* the trust root names (``keys.purpose_signers``), never by
the release keys, and it is read only by :func:`verify_token`::

    data = make_token([signer], now=datetime.now(timezone.utc), valid_for=timedelta(days=1))
    token = verify_token(trust, data)           # SignatureError, FormatError: exit 3
    token.time, token.expires, token.signer

What a device does with it (its time floor, replay) is ``agent.timefloor``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Targets

from airlock.errors import FormatError, SignatureError, UsageError
from keys.metadata import KIND_FIELD, ReleaseSerializer, parse_metadata
from keys.purpose_signers import purpose_tally
from keys.release import format_time, parse_time
from keys.signers import sign_checked
from keys.trust import TrustRoot

__all__ = ["SECTION", "TimeToken", "is_time_token", "make_token", "verify_token"]

KIND = "time"
SECTION = "airlock_time"


@dataclass(frozen=True)
class TimeToken:
    time: datetime  # the signed time: a lower bound of the real time once verified
    expires: datetime
    signer: str  # the time signer whose threshold signed it


def make_token(signers: Sequence[Signer], *, now: datetime, valid_for: timedelta) -> bytes:
    """A token saying ``now``, valid for ``valid_for``, signed by every signer."""
    if valid_for <= timedelta(0):
        raise UsageError("a time token must be valid for some time: give --valid-for like 1d")
    now = now.replace(microsecond=0)
    signed = Targets(version=1, expires=now + valid_for, targets={},
                     unrecognized_fields={KIND_FIELD: KIND, SECTION: {"time": format_time(now)}})
    md = Metadata(signed)
    payload = ReleaseSerializer().serialize(signed)
    for s in signers:
        md.signatures[s.public_key.keyid] = sign_checked(s, payload)
    return md.to_bytes()


def is_time_token(data: bytes) -> bool:
    """Whether ``data`` reads as a time token (signatures not checked): the drop folder asks."""
    try:
        md = parse_metadata(data, Targets, "time token")
    except FormatError:
        return False
    return bool(md.signed.unrecognized_fields.get(KIND_FIELD) == KIND)


def verify_token(trust: TrustRoot, data: bytes) -> TimeToken:
    """The token, once a time signer's threshold signed it; its expiry is the caller's to judge
    (a device without a trusted clock cannot)."""
    md = parse_metadata(data, Targets, "time token")
    fields = md.signed.unrecognized_fields
    if fields.get(KIND_FIELD) != KIND or not isinstance(fields.get(SECTION), dict):
        raise FormatError("this is not a time token (make one with 'airlock time-token')")
    raw = fields[SECTION].get("time")
    if not isinstance(raw, str):
        raise FormatError("time token field 'airlock_time.time' is missing")
    when = parse_time(raw, "time token field 'airlock_time.time'")
    if when > md.signed.expires:
        raise FormatError("time token says a time after its own expiry")
    tally = purpose_tally(trust.md.signed, KIND, ReleaseSerializer().serialize(md.signed),
                          md.signatures)
    if not tally.complete:
        if tally.signer is None:
            raise SignatureError("time token is not signed by a time signer this device's "
                                 "trust root names ('airlock keys rotate --time-signer')")
        raise SignatureError(f"time token has {tally.valid} of {tally.threshold} signatures "
                             f"required for time signer '{tally.signer}'")
    return TimeToken(when, md.signed.expires, str(tally.signer))
