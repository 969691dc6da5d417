"""``airlock verify``: check a bundle's signatures, expiry and every blob, as a device would.

    airlock verify vision-1.2.0.airlock --trust root.json
    airlock verify vision-1.2.0.airlock.parts.json --trust root.json --ring canary --json
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airlock.console import json_option, progress, read_input
from airlock.errors import FormatError
from airlock.format.oci import BLOB_PREFIX
from airlock.format.parts import open_media
from keys.identify import misplaced
from keys.trust import TrustRoot, role_label

__all__ = ["DESCRIPTION", "EXAMPLES", "Verified", "VerifiedFlags", "add_arguments", "run"]

EXAMPLES = ("airlock verify vision-1.2.0.airlock --trust root.json",)
DESCRIPTION = None


@dataclass(frozen=True)
class Verified:
    """A bundle that passed every check a device makes."""

    bundle: str
    name: str
    version: str
    sequence: int
    role: str
    signers: list[str]
    threshold: int
    rings: list[str] | None
    files: int
    blobs: int
    ok: bool = field(default=True)

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "ok": self.ok, "name": self.name,
                "version": self.version, "sequence": self.sequence, "role": self.role,
                "signers": self.signers, "threshold": self.threshold, "rings": self.rings,
                "files": self.files, "blobs": self.blobs}

    def text(self) -> str:
        return (f"OK {self.bundle}: {self.name} {self.version} (sequence {self.sequence}) "
                f"signed by role '{role_label(self.role)}' ({len(self.signers)} of "
                f"{self.threshold} signatures), {self.blobs} blobs in {self.files} files checked")


def add_arguments(v: argparse.ArgumentParser) -> None:
    v.add_argument("bundle", type=Path, metavar="BUNDLE",
                   help="the bundle, or its parts (BUNDLE.part001, BUNDLE.parts.json or their "
                   "directory)")
    v.add_argument("--trust", type=Path, required=True, metavar="ROOT.json",
                   help="the trust root devices have")
    v.add_argument("--ring", metavar="RING",
                   help="check it as a device in this ring would (default: for the rings the "
                   "release names)")
    json_option(v)


@dataclass(frozen=True)
class VerifiedFlags:
    """A flags bundle that passed every check a device makes before applying it."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.data, "ok": True}

    def text(self) -> str:
        from bundler.examine.flag_bundles import flags_text

        d = self.data
        return "\n".join([
            f"OK {d['bundle']}: flags {d['name']} (sequence {d['sequence']}) signed by role "
            f"'{role_label(d['verified_role'])}' ({len(d['valid_signers'])} of "
            f"{d['threshold']} signatures)", *flags_text(d)])


def run(a: argparse.Namespace) -> Verified | VerifiedFlags:
    trust = TrustRoot.given(read_input(a.trust, "trust root"), f"--trust {a.trust}")
    try:
        f, size = open_media(str(a.bundle))
        from bundler.examine.verify import verify_bundle

        with f, progress(size, "verifying") as tick:
            verified = verify_bundle(f, trust, ring=a.ring, progress=tick)
    except FormatError as e:
        # A key, trust root or spec handed over by mistake: say which, not a tar error.
        if str(e).startswith("not a bundle"):
            raise FormatError(misplaced(str(a.bundle)) or str(e)) from None
        raise
    if isinstance(verified, dict):
        return VerifiedFlags({**verified, "bundle": str(a.bundle)})
    r = verified.release
    return Verified(
        bundle=str(a.bundle), name=r.name, version=r.version, sequence=r.sequence,
        role=verified.role, signers=list(verified.signers), threshold=verified.threshold,
        rings=list(verified.rings) if verified.rings is not None else None,
        files=len(r.files), blobs=sum(1 for p in r.files if p.startswith(BLOB_PREFIX)))
