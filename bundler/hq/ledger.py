"""The fleet ledger: enrolled devices, verified reports, builds and rollouts in one database.

    ledger = Ledger(ledger_url(None, Path("airlock-fleet")))     # or "postgresql://…"
    ledger.enroll(Path("cam-7.pub"), "cam-7", site="north")
    results = ledger.ingest([Path("/media/usb/airlock-reports/")])
    rows = ledger.table()                 # the same rows as the fleet directory gave

The same checks as ``bundler.hq.ingest`` (``verify_report``: enrolled key,
forged, altered, another device's inventory) decide what counts; what counts
is written with its raw signed bytes, its inventory and one audit entry, in
transactions of at most ``_BATCH`` reports. Signatures are checked before the
write lock is taken, so two ingests verify in parallel and write in turn; the
device's key is checked again under the lock (a key replaced meanwhile
refuses the report instead of counting it). A report already in the ledger
(same bytes) is counted once. Reads are in ``ledger_queries``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key
from sqlalchemy import Connection, Engine, bindparam, select, update

from airlock.errors import AirlockError, UsageError
from airlock.files import MediumError
from bundler.hq.ingest import Ingested, read_returned, report_files, verify_report
from bundler.hq.ledger_audit import Chain, utc
from bundler.hq.ledger_db import open_ledger, shown_url
from bundler.hq.ledger_queries import LedgerReads
from bundler.hq.ledger_schema import devices, inventories, reports
from bundler.hq.report_shape import ReportFacts, report_facts
from keys.device import DeviceDocument
from keys.keyfile import load_public_key
from keys.release import is_plain_name

__all__ = ["Ledger", "Verified"]

_BATCH = 500


@dataclass
class Verified:
    """A report whose signature checked out, ready to be written."""

    item: Ingested
    data: bytes
    keyid: str
    facts: ReportFacts
    inventory: bytes
    agent: dict[str, Any] | None = None  # the device's class facts: agent, platform, kit


def _key(device_id: str, entry: dict[str, Any]) -> Key:
    pub = dict(entry)
    return Key.from_dict(str(pub.pop("keyid")), pub)


class Ledger(LedgerReads):
    """Headquarters' records in the database at ``url``, opened (and migrated) once."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        super().__init__(engine or open_ledger(url))
        self.url = url
        self.root = shown_url(url)

    # -- enrolment -----------------------------------------------------------
    def enroll(self, pub: Path, device_id: str, site: str | None = None, *,
               force: bool = False) -> dict[str, Any]:
        if not is_plain_name(device_id):
            raise UsageError(f"--device-id {device_id!r} must be letters, digits, '.', '_' "
                             "or '-'")
        key = load_public_key(pub)
        return self.enroll_key(key, device_id, site, force=force)

    def enroll_key(self, key: Key, device_id: str, site: str | None = None, *,
                   force: bool = False, enrolled: datetime | None = None) -> dict[str, Any]:
        with self.engine.begin() as conn, Chain(conn) as chain:
            other = conn.execute(select(devices.c.device_id).where(
                devices.c.keyid == key.keyid, devices.c.device_id != device_id)).scalar()
            if other is not None:
                raise UsageError(f"key {key.keyid[:16]}… is already enrolled for {other}")
            old = conn.execute(select(devices.c.keyid).where(
                devices.c.device_id == device_id)).scalar()
            if old is not None and old != key.keyid and not force:
                raise UsageError(f"{device_id} is enrolled with another key ({old[:16]}…); "
                                 "--force replaces it")
            values = {"keyid": key.keyid, "key": {"keyid": key.keyid, **key.to_dict()},
                      "site": site}
            if old is None:
                conn.execute(devices.insert().values(
                    device_id=device_id, enrolled=enrolled or datetime.now(timezone.utc),
                    **values))
            else:
                conn.execute(update(devices).where(devices.c.device_id == device_id)
                             .values(**values))
            chain.add("enroll", device_id, {"keyid": key.keyid, "site": site,
                                            "replaced": old})
        return {"device_id": device_id, "site": site, "keyid": key.keyid,
                "fleet": self.root, "replaced": old is not None}

    def _keys(self) -> dict[str, Key]:
        with self.engine.connect() as conn:
            return {r.device_id: _key(r.device_id, r.key)
                    for r in conn.execute(select(devices.c.device_id, devices.c.key))}

    # -- ingest --------------------------------------------------------------
    def ingest(self, files: list[Path], decryption_keys: Sequence[bytes] = (),
               progress: Callable[[int, int], None] | None = None) -> list[Ingested]:
        """Report files (or folders of them) checked and written; one result per file.

        A report encrypted to headquarters is opened with ``decryption_keys`` (PEM private
        keys) first, and the signed report inside is what is checked and kept."""
        read: list[tuple[Ingested, bytes]] = []
        out: list[Ingested] = []
        for path in report_files(files):
            item = Ingested(str(path))
            out.append(item)
            try:
                read.append((item, read_returned(path, decryption_keys)))
            except MediumError as e:
                item.reason = f"not read: {e}"
            except OSError as e:
                item.reason = f"cannot read: {e.strerror}"
            except AirlockError as e:
                item.reason = str(e)
        self.ingest_bytes(read, progress)
        return out

    def ingest_bytes(self, read: list[tuple[Ingested, bytes]],
                     progress: Callable[[int, int], None] | None = None) -> None:
        """Each ``(item, bytes)`` verified, then written in batches; ``item`` says how it went."""
        keys = self._keys()
        done = 0
        for start in range(0, len(read), _BATCH):
            batch: list[Verified] = []
            for item, data in read[start:start + _BATCH]:
                try:
                    doc, inv = verify_report(data, keys.get)
                    item.device_id = str(doc.body["device_id"])
                    agent = doc.body.get("agent")
                    batch.append(Verified(item, data, doc.keyid, _facts(doc), inv,
                                          agent if isinstance(agent, dict) else None))
                except AirlockError as e:
                    item.reason = str(e)
            self._write(batch)
            done += len(read[start:start + _BATCH])
            if progress is not None:
                progress(done, len(read))

    def _write(self, batch: list[Verified]) -> None:
        if not batch:
            return
        with self.engine.begin() as conn, Chain(conn) as chain:
            names = sorted({v.facts.device_id for v in batch})
            now_keys = dict(conn.execute(select(devices.c.device_id, devices.c.keyid)
                                         .where(devices.c.device_id.in_(names))).all())
            fresh = []
            for v in batch:
                if now_keys.get(v.facts.device_id) != v.keyid:
                    v.item.reason = (f"{v.facts.device_id}'s enrolled key changed while this "
                                     "report was checked; ingest it again")
                else:
                    fresh.append(v)
            _write_reports(conn, chain, fresh)

    # -- rollouts, builds, carried -------------------------------------------
    def record(self, action: str, subject: str, write: Callable[[Connection], dict[str, Any]]
               ) -> dict[str, Any]:
        """Run ``write`` in one transaction with its audit entry (``ledger_records`` uses it)."""
        with self.engine.begin() as conn, Chain(conn) as chain:
            detail = write(conn)
            chain.add(action, subject, detail)
        return detail


def _facts(doc: DeviceDocument) -> ReportFacts:
    return report_facts(doc.body)


def _newest(conn: Connection, names: list[str]) -> dict[str, datetime]:
    rows = conn.execute(select(devices.c.device_id, reports.c.time)
                        .join(reports, reports.c.id == devices.c.latest_report_id)
                        .where(devices.c.device_id.in_(names)))
    return {r.device_id: utc(r.time) for r in rows}


def _write_reports(conn: Connection, chain: Chain, batch: list[Verified]) -> None:
    """The batch's new reports, inventories, newest-report links and audit entries.

    Bulk statements (one INSERT … RETURNING for the reports): per-row statements cost
    more than the signature checks at fleet scale (docs/BENCHMARKS.md).
    """
    shas = [hashlib.sha256(v.data).hexdigest() for v in batch]
    known = dict(conn.execute(select(reports.c.sha256, reports.c.id)
                              .where(reports.c.sha256.in_(set(shas)))).all()) if shas else {}
    new: list[tuple[Verified, str]] = []
    for v, sha in zip(batch, shas, strict=True):
        if sha in known:
            v.item.stored = f"report {known[sha]} (already in the ledger)"
        elif sha not in {s for _, s in new}:
            new.append((v, sha))
        else:  # the same bytes twice in one ingest: counted once
            v.item.stored = "(the same report again)"
    if not new:
        return
    received = datetime.now(timezone.utc)
    rows = [{"device_id": v.facts.device_id, "time": v.facts.time, "received": received,
             "sha256": sha, "raw": v.data, "ring": v.facts.ring, "release": v.facts.release,
             "version": v.facts.version, "health_ok": v.facts.health_ok,
             "health_reason": v.facts.health_reason, "last_check": v.facts.last_check,
             "rollbacks": v.facts.rollbacks,
             "drift_max": max(v.facts.drift.values(), default=None),
             "drift_warn": v.facts.drift_warn} for v, sha in new]
    ids = conn.execute(reports.insert().returning(reports.c.id, sort_by_parameter_order=True),
                       rows).scalars().all()
    conn.execute(inventories.insert(), [
        {"device_id": v.facts.device_id, "report_id": rid, "time": v.facts.time,
         "raw": v.inventory} for (v, _), rid in zip(new, ids, strict=True)])
    newest = _newest(conn, sorted({v.facts.device_id for v, _ in new}))
    moved: dict[str, tuple[int, str | None, dict[str, Any] | None]] = {}
    for (v, sha), rid in zip(new, ids, strict=True):
        f = v.facts
        if f.device_id not in newest or newest[f.device_id] <= f.time:
            newest[f.device_id] = f.time
            moved[f.device_id] = (rid, f.ring, None if v.agent is None else {"agent": v.agent})
        chain.add("ingest", f.device_id, {"report": rid, "sha256": sha,
                                          "time": f.time.isoformat()})
        v.item.stored = f"report {rid}"
    conn.execute(update(devices).where(devices.c.device_id == bindparam("d"))
                 .values(latest_report_id=bindparam("r"), ring=bindparam("g"),
                         facts=bindparam("f")),
                 [{"d": d, "r": r, "g": g, "f": f} for d, (r, g, f) in moved.items()])
