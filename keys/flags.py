"""Signed feature flags: a flags set, its metadata, and the stable percentage buckets.

A flags set is TUF ``targets`` metadata like a release, signed by the same
roles (the release role, or a ring signer for its rings), with its own name
and anti-rollback sequence (the TUF version) and expiry, but no files and an
``airlock_flags`` section instead of ``airlock``, and the signed kind
``"flags"`` (``keys.metadata.Kind``), so no agent can mistake it for a release
(an older agent refuses it: "no 'airlock' section")::

    data = sign_flags(FlagSet("site", {"night_mode": True}, sequence=3, expires=when,
                              percent=10, rings=("canary",)), [signer])
    if bundle_kind(data).is_flags():                         # keys.metadata: how to verify it
        flags, role = verify_flags(trust, data, ring="canary")   # exit 3 on anything wrong
    in_bucket("cam-7", "night_mode", 10)                     # stable: same answer every run

A percentage is decided per device and flag: ``sha256(device_id NUL flag)``
picks a bucket 0..9999; the device is in when its bucket is below
``percent × 100``. 10% is the same devices every time, and 20% keeps them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Targets
from tuf.api.serialization import SerializationError

from airlock.errors import FormatError, UsageError
from keys.metadata import FLAGS_SECTION, KIND_FIELD, Kind, ReleaseSerializer, kind_of
from keys.signed_fields import FieldError, valid_flags, valid_name, valid_sequence
from keys.trust import TrustRoot, check_rings

__all__ = ["FLAGS_FIELD", "FlagSet", "bucket", "in_bucket", "read_flags", "sign_flags",
           "verify_flags"]

FLAGS_FIELD = FLAGS_SECTION
_BUCKETS = 10_000


@dataclass(frozen=True)
class FlagSet:
    name: str
    flags: dict[str, Any]
    sequence: int
    expires: datetime
    percent: float = 100.0
    rings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "flags": self.flags, "sequence": self.sequence,
                "expires": self.expires.isoformat(), "percent": self.percent,
                "rings": list(self.rings)}


def bucket(device_id: str, flag: str) -> int:
    """The device's bucket for ``flag``, 0..9999, the same on every run and host."""
    digest = hashlib.sha256(f"{device_id}\0{flag}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def in_bucket(device_id: str, flag: str, percent: float) -> bool:
    return bucket(device_id, flag) < round(percent * _BUCKETS / 100)


def _check(flags: FlagSet) -> FlagSet:
    try:
        valid_name(flags.name)
        valid_sequence(flags.sequence)
        valid_flags(flags.flags)
        for ring in flags.rings:
            valid_name(ring)
    except FieldError as e:
        raise FormatError(f"flags set: {e}") from None
    if not flags.flags:
        raise FormatError("flags set names no flag")
    p = flags.percent
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
        raise FormatError(f"flags set: percent must be 0 to 100, not {p!r}")
    return flags


def sign_flags(flags: FlagSet, signers: list[Signer]) -> bytes:
    """The signed metadata of ``flags`` (checked by the device's own rules first)."""
    try:
        _check(flags)
    except FormatError as e:
        raise UsageError(str(e)) from None
    body = {"name": flags.name, "flags": flags.flags, "percent": flags.percent,
            "rings": list(flags.rings)}
    md = Metadata(Targets(version=flags.sequence, expires=flags.expires, targets={},
                          unrecognized_fields={KIND_FIELD: Kind.FLAGS.value,
                                               FLAGS_FIELD: body}))
    try:
        for s in signers:
            md.sign(s, append=True, signed_serializer=ReleaseSerializer())
    except SerializationError as e:
        raise UsageError(f"the flags cannot be signed as JSON: {e}") from None
    return md.to_bytes()


def read_flags(md: Metadata[Any]) -> FlagSet:
    """The flags set of parsed metadata, strict about every field (signatures not checked)."""
    signed = md.signed
    body = signed.unrecognized_fields.get(FLAGS_FIELD)
    if not isinstance(body, dict) or set(body) - {"name", "flags", "percent", "rings"}:
        raise FormatError(f"flags metadata needs an '{FLAGS_FIELD}' section of name, flags, "
                          "percent, rings")
    if signed.targets or "airlock" in signed.unrecognized_fields:
        raise FormatError("flags metadata must carry no files and no release")
    if not kind_of(md).is_flags():
        raise FormatError("the metadata is signed as a release, not a flags set")
    rings = body.get("rings", [])
    if not isinstance(rings, list):
        raise FormatError("flags set: rings must be a list")
    return _check(FlagSet(body.get("name"), body.get("flags"), signed.version,  # type: ignore[arg-type]
                          signed.expires, body.get("percent", 100), tuple(rings)))


def verify_flags(trust: TrustRoot, data: bytes, ring: str | None,
                 now: datetime | None = None) -> tuple[FlagSet, str]:
    """A flags set a device in ``ring`` may apply, and the role that signed it; else exit 3."""
    md, tally = trust.verify_signed(data, "flags metadata", now)
    role, signer_rings = tally.role, tally.rings
    flags = read_flags(md)
    check_rings(role, signer_rings, flags.rings, ring)
    return flags, role
