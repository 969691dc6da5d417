"""Directed visits: which device takes which release, signed by a director signer.

A *visit* is what a technician carries to a site beside the bundles: per
device id, one instruction, signed by a threshold of the keys of one
*director signer* the trust root names (``keys.purpose_signers``, purpose
``director``; never the release keys). It is TUF ``targets`` metadata with no
targets, ``airlock_kind`` ``"visit"`` and a section ``airlock_visit``::

    {"sequence": 1765152000, "issued": "2026-12-08T00:00:00Z",
     "devices": {"cam-1": {"action": "install", "release": "vision-3", "sequence": 3},
                 "cam-2": {"action": "stay"},
                 "cam-3": {"action": "rollback", "release": "vision-1", "sequence": 1}}}

Its TUF ``expires`` makes it short-lived; its ``sequence`` (the host's time
in seconds unless given) makes it replay-proof: a device refuses a visit
older than the last one it followed (``agent.directed``)::

    data = make_visit([signer], {"cam-1": install_to("vision-3", 3)}, now=now,
                      valid_for=timedelta(days=2))
    visit = verify_visit(trust, data)     # SignatureError, FormatError: exit 3
    visit.devices["cam-1"].action         # "install"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Targets

from airlock.errors import FormatError, SignatureError, UsageError
from keys.metadata import KIND_FIELD, ReleaseSerializer, parse_metadata
from keys.purpose_signers import purpose_tally
from keys.signed_fields import is_plain_name
from keys.signed_time import format_time, parse_time
from keys.signers import sign_checked
from keys.trust import TrustRoot

__all__ = ["ACTIONS", "Instruction", "Visit", "is_visit", "make_visit", "verify_visit"]

KIND = "visit"
SECTION = "airlock_visit"
#: What a visit can tell a device.
ACTIONS = ("install", "stay", "rollback")


@dataclass(frozen=True)
class Instruction:
    action: str  # install, stay, rollback
    release: str | None = None  # the release id to install or roll back to
    sequence: int | None = None  # its sequence

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action}
        if self.release is not None:
            out.update(release=self.release, sequence=self.sequence)
        return out

    def text(self) -> str:
        if self.action == "stay":
            return "stay with the active release"
        verb = "install" if self.action == "install" else "roll back to"
        return f"{verb} {self.release} (sequence {self.sequence})"

    @classmethod
    def from_dict(cls, raw: Any, device: str) -> Instruction:
        where = f"visit instruction for {device!r}"
        if not isinstance(raw, dict) or raw.get("action") not in ACTIONS:
            raise FormatError(f"{where} needs an 'action', one of {', '.join(ACTIONS)}")
        if raw["action"] == "stay":
            return cls("stay")
        rid, seq = raw.get("release"), raw.get("sequence")
        if not is_plain_name(rid) or type(seq) is not int or seq < 1:
            raise FormatError(f"{where} needs a 'release' id and its 'sequence'")
        return cls(str(raw["action"]), str(rid), seq)


@dataclass(frozen=True)
class Visit:
    sequence: int
    issued: datetime  # the director's clock when it signed: a lower bound of the real time
    expires: datetime
    devices: dict[str, Instruction]
    signer: str = ""  # the director signer whose threshold signed it

    def summary(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "issued": format_time(self.issued),
                "expires": format_time(self.expires), "signer": self.signer,
                "devices": {d: i.to_dict() for d, i in sorted(self.devices.items())}}


def make_visit(signers: Sequence[Signer], devices: Mapping[str, Instruction], *,
               now: datetime, valid_for: timedelta, sequence: int | None = None) -> bytes:
    """A visit with ``devices``' instructions, valid for ``valid_for``, signed by every signer."""
    if valid_for <= timedelta(0):
        raise UsageError("a visit must be valid for some time: give --valid-for like 2d")
    if not devices:
        raise UsageError("a visit needs at least one device")
    now = now.replace(microsecond=0)
    seq = int(now.timestamp()) if sequence is None else sequence
    if seq < 1:
        raise UsageError("a visit's --sequence must be a positive integer")
    section = {"sequence": seq, "issued": format_time(now),
               "devices": {d: i.to_dict() for d, i in sorted(devices.items())}}
    signed = Targets(version=1, expires=now + valid_for, targets={},
                     unrecognized_fields={KIND_FIELD: KIND, SECTION: section})
    md = Metadata(signed)
    payload = ReleaseSerializer().serialize(signed)
    for s in signers:
        md.signatures[s.public_key.keyid] = sign_checked(s, payload)
    return md.to_bytes()


def is_visit(data: bytes) -> bool:
    """Whether ``data`` reads as a visit (signatures not checked)."""
    try:
        md = parse_metadata(data, Targets, "visit")
    except FormatError:
        return False
    return bool(md.signed.unrecognized_fields.get(KIND_FIELD) == KIND)


def _read(md: Metadata[Targets]) -> Visit:
    fields = md.signed.unrecognized_fields
    section = fields.get(SECTION)
    if fields.get(KIND_FIELD) != KIND or not isinstance(section, dict):
        raise FormatError("this is not a visit (make one with 'airlock direct')")
    seq, issued, devices = section.get("sequence"), section.get("issued"), section.get("devices")
    if type(seq) is not int or seq < 1 or not isinstance(issued, str) \
            or not isinstance(devices, dict) or not devices:
        raise FormatError("visit needs a 'sequence', an 'issued' time and 'devices'")
    when = parse_time(issued, "visit field 'airlock_visit.issued'")
    if when > md.signed.expires:
        raise FormatError("visit was issued after its own expiry")
    parsed = {}
    for device, raw in devices.items():
        if not is_plain_name(device):
            raise FormatError(f"visit names a device {str(device)[:40]!r} that is not a plain name")
        parsed[device] = Instruction.from_dict(raw, device)
    return Visit(seq, when, md.signed.expires, parsed)


def verify_visit(trust: TrustRoot, data: bytes) -> Visit:
    """The visit, once a director signer's threshold signed it; its expiry, its device and its
    sequence are the device's to judge (``agent.directed``)."""
    md = parse_metadata(data, Targets, "visit")
    visit = _read(md)
    tally = purpose_tally(trust.md.signed, "director",
                          ReleaseSerializer().serialize(md.signed), md.signatures)
    if not tally.complete:
        if tally.signer is None:
            raise SignatureError("visit is not signed by a director signer this device's trust "
                                 "root names ('airlock keys rotate --director-signer')")
        raise SignatureError(f"visit has {tally.valid} of {tally.threshold} signatures "
                             f"required for director signer '{tally.signer}'")
    return Visit(visit.sequence, visit.issued, visit.expires, visit.devices, str(tally.signer))
