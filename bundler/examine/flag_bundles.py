"""Flags bundles (``airlock flags set``) verified, inspected and compared on the host.

A flags bundle is signed metadata alone (``keys.flags``): no files, no
release. ``verify``, ``inspect`` and ``diff`` ask ``keys.metadata.Kind``
what they were given and come here for a flags set, so a flags stick can be
checked before it travels::

    head = BundleReader(f).head()
    if bundle_kind(head.release_json).is_flags():
        info = flags_info(head, trust=trust, ring=None)
    info["flags"], info["verified_role"]      # {"night_mode": True}, "release"
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from tuf.api.metadata import Targets

from airlock.errors import FormatError
from airlock.format.bundle import BundleHead, BundleReader
from keys.flags import read_flags
from keys.metadata import parse_metadata
from keys.trust import TrustRoot, check_rings

__all__ = ["flags_info", "flags_summary", "flags_text", "is_flags_head", "read_flags_bundle"]


def is_flags_head(head: BundleHead) -> bool:
    from keys.metadata import bundle_kind

    return bundle_kind(head.release_json).is_flags()


def read_flags_bundle(reader: BundleReader) -> BundleHead:
    """The head of a flags bundle, once nothing follows it (as the agent requires)."""
    head = reader.head()
    if head.root_json is not None:
        raise FormatError("a flags bundle cannot carry a trust root; rotate it with a release")
    for _ in reader.files({}):
        pass  # refuses any member: a flags bundle is its metadata alone
    return head


def flags_info(head: BundleHead, *, trust: TrustRoot | None, ring: str | None,
               now: datetime | None = None) -> dict[str, Any]:
    """What a flags bundle sets, for whom, until when; with ``trust``, checked as a device would.

    ``ring``: check it as a device in that ring would; None checks only the
    signer's ring limits (it may target any ring). Exit 3 on anything wrong.
    """
    now = now or datetime.now(timezone.utc)
    verified = None
    if trust is not None:
        md, tally = trust.verify_signed(head.release_json, "flags metadata", now)
        flags = read_flags(md)
        check_rings(tally.role, tally.rings, flags.rings, ring, any_ring=ring is None)
        verified = tally
    else:
        md = parse_metadata(head.release_json, Targets, "flags metadata")
        flags = read_flags(md)
    left = flags.expires - now
    return {
        "kind": "flags",
        "bundle": None,  # the caller names it
        **flags_summary(flags.to_dict()),
        "expires_in_days": round(left.total_seconds() / 86400, 2),
        "metadata_sha256": hashlib.sha256(head.release_json).hexdigest(),
        "signers": sorted(md.signatures),
        "verified_role": verified.role if verified else None,
        "valid_signers": list(verified.valid) if verified else None,
        "threshold": verified.threshold if verified else None,
        "signer_rings": list(verified.rings) if verified and verified.rings is not None else None,
    }


def flags_summary(flags: dict[str, Any]) -> dict[str, Any]:
    """The fields of a flags set people compare: name, sequence, flags, percent, rings, expiry."""
    return {k: flags[k] for k in ("name", "sequence", "flags", "percent", "rings", "expires")}


def flags_text(d: dict[str, Any]) -> list[str]:
    """A flags bundle in lines, for ``inspect`` and ``verify``."""
    who = ("every device" if not d["rings"] else "rings " + ", ".join(d["rings"]))
    share = "" if d["percent"] >= 100 else f", {d['percent']:g}% of devices"
    lines = [f"flags set {d['name']} (sequence {d['sequence']}) for {who}{share}",
             f"expires   {d['expires']} (in {d['expires_in_days']} days)"]
    lines += [f"  {k} = {json.dumps(v)}" for k, v in sorted(d["flags"].items())]
    return lines
