"""What the other flows write into the ledger: builds, signatures, rollouts, what was carried.

    record_build(ledger, Path("vision-1.3.0.airlock"), spec=Path("airlock.yaml"))
    record_signature(ledger, Path("vision-1.3.0.airlock"), ["3fa9…"])
    record_rollout(ledger, report, Path("vision-1.3.0.airlock"))   # fleet rollout's report

A build is known by its bundle digest: ``sha256:`` and the sha256 of the
release metadata every signer signs (``signed_sha256``), which stays the
same when ``airlock sign`` adds signatures, so a later signature and a
rollout of the same bundle find their build. Each record is one transaction
with its audit entry (``Ledger.record``).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update

from airlock.errors import AirlockError
from airlock.format.bundle import BundleReader
from airlock.format.parts import open_media
from bundler.hq.ledger import Ledger
from bundler.hq.ledger_schema import builds, carried, rollout_devices, rollouts, signatures
from keys.release import Release
from keys.signatures import Signable

__all__ = ["BundleIdentity", "bundle_identity", "record_build", "record_carried",
           "record_rollout", "record_signature"]


class BundleIdentity:
    """A bundle's digest, release and signers, read from its head (not verified here)."""

    def __init__(self, bundle: Path) -> None:
        f, _ = open_media(str(bundle))
        with f:
            head = BundleReader(f).head()
        signable = Signable.from_bytes(head.release_json, "release")
        self.digest = "sha256:" + signable.signed_sha256
        self.signers = signable.signers
        self.name, self.version = bundle.name[:128], None
        try:
            r = Release.from_metadata(signable.md)
            self.name, self.version = f"{r.name}-{r.sequence}", r.version
        except AirlockError:  # a flags set: known by its file name
            pass


def bundle_identity(bundle: Path) -> BundleIdentity | None:
    """The bundle's identity, or None when its head cannot be read (the ledger still records)."""
    try:
        return BundleIdentity(bundle)
    except (AirlockError, OSError, ValueError, KeyError):
        return None


def _upsert_build(conn: Connection, ident: BundleIdentity, path: Path, spec: Path | None,
                  sbom: str | None) -> int:
    found = conn.execute(select(builds.c.id).where(
        builds.c.bundle_digest == ident.digest)).scalar()
    if found is not None:
        conn.execute(update(builds).where(builds.c.id == found).values(signers=ident.signers))
        return int(found)
    spec_digest = None
    if spec is not None and spec.is_file():
        spec_digest = "sha256:" + hashlib.sha256(spec.read_bytes()).hexdigest()
    return int(conn.execute(builds.insert().values(
        bundle_digest=ident.digest, release=ident.name, version=ident.version,
        spec_digest=spec_digest, signers=ident.signers, sbom=sbom, path=str(path.absolute()),
        recorded=datetime.now(timezone.utc)).returning(builds.c.id)).scalar_one())


def record_build(ledger: Ledger, bundle: Path, spec: Path | None = None,
                 sbom: str | None = None) -> dict[str, Any]:
    ident = BundleIdentity(bundle)

    def write(conn: Connection) -> dict[str, Any]:
        build = _upsert_build(conn, ident, bundle, spec, sbom)
        return {"build": build, "bundle": ident.digest, "release": ident.name,
                "version": ident.version, "signers": ident.signers}

    return ledger.record("build", ident.name, write)


def record_signature(ledger: Ledger, bundle: Path, added: list[str]) -> dict[str, Any]:
    ident = BundleIdentity(bundle)

    def write(conn: Connection) -> dict[str, Any]:
        build = _upsert_build(conn, ident, bundle, None, None)
        now = datetime.now(timezone.utc)
        for keyid in added:
            conn.execute(signatures.insert().values(build_id=build, keyid=keyid, added=now))
        return {"build": build, "bundle": ident.digest, "added": added,
                "signers": ident.signers}

    return ledger.record("sign", ident.name, write)


def record_rollout(ledger: Ledger, report: dict[str, Any], bundle: Path) -> dict[str, Any]:
    """A ``fleet rollout`` report: the rollout, its waves, each device's outcome."""
    ident = bundle_identity(bundle)

    def write(conn: Connection) -> dict[str, Any]:
        if ident is not None:
            _upsert_build(conn, ident, bundle, None, None)
        rid = conn.execute(rollouts.insert().values(
            release=str(report["release"])[:128],
            bundle_digest=None if ident is None else ident.digest, waves=report["waves"],
            halted=bool(report["halted"]), dry_run=bool(report["dry_run"]),
            exit_code=int(report["exit_code"]), finished=datetime.now(timezone.utc),
        ).returning(rollouts.c.id)).scalar_one()
        for d in report["devices"]:
            conn.execute(rollout_devices.insert().values(
                rollout_id=rid, device_id=str(d["device"])[:128], wave=d.get("wave"),
                before=d.get("before"), after=d.get("after"), result=str(d["result"])[:64],
                ok=bool(d["ok"]), reason=d.get("reason"), seconds=d.get("seconds")))
        return {"rollout": rid, "release": report["release"],
                "bundle": None if ident is None else ident.digest,
                "devices": len(report["devices"]), "halted": report["halted"]}

    return ledger.record("rollout", str(report["release"]), write)


def record_carried(ledger: Ledger, bundle: Path, medium: str,
                   device_ids: list[str]) -> dict[str, Any]:
    """A bundle copied toward devices (a push, a stick): which, to whom, on what."""
    ident = bundle_identity(bundle)

    def write(conn: Connection) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        for device in device_ids or [None]:  # type: ignore[list-item]
            conn.execute(carried.insert().values(
                bundle_digest=None if ident is None else ident.digest,
                release=None if ident is None else ident.name, device_id=device,
                medium=medium[:512], time=now))
        return {"bundle": None if ident is None else ident.digest, "medium": medium,
                "devices": device_ids}

    return ledger.record("carried", medium, write)
