"""Questions answered from the ledger: the fleet table, status, a device's history, the audit log.

    reads = LedgerReads(open_ledger(url))
    reads.status(site="north")          # one row per device, from columns: no JSON parsed
    reads.history("cam-7")              # enrolment, reports, rollouts, builds it ran, carried
    reads.table()                       # the fleet table the report command prints

``status`` is the fast path (one join over ``devices`` and their newest
report's columns; under a second at 10,000 devices, docs/BENCHMARKS.md);
``table`` and ``reports`` re-read the stored signed bytes for the fields only
the documents hold (drift per model, journal counts) and feed the HTML fleet
report and the ``--textfile`` metrics exactly as the fleet directory did.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, select

from airlock.errors import AirlockError, UsageError
from bundler.hq.ingest import fleet_row
from bundler.hq.ledger_audit import ChainProblem, utc, verify_chain
from bundler.hq.ledger_schema import (
    audit,
    audit_head,
    builds,
    carried,
    devices,
    inventories,
    reports,
    rollout_devices,
    rollouts,
)
from bundler.hq.report_shape import report_facts
from keys.device import REPORT_TYPE, verify_document

__all__ = ["LedgerReads"]


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat(timespec="seconds")


def _body(raw: bytes) -> dict[str, Any] | None:
    try:
        body = verify_document(bytes(raw), REPORT_TYPE).body
        report_facts(body)
    except AirlockError:
        return None
    return body


class LedgerReads:
    """Read-only questions over an opened ledger engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def devices(self) -> dict[str, dict[str, Any]]:
        """Enrolled devices by id: site, ring, key, enrolment time."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(devices.c.device_id, devices.c.site, devices.c.ring,
                                       devices.c.key, devices.c.enrolled)
                                .order_by(devices.c.device_id))
            return {r.device_id: {"device_id": r.device_id, "site": r.site, "ring": r.ring,
                                  "key": r.key, "enrolled": _iso(r.enrolled)} for r in rows}

    def latest(self, device: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            raw = conn.execute(select(reports.c.raw).join(
                devices, devices.c.latest_report_id == reports.c.id)
                .where(devices.c.device_id == device)).scalar()
        return None if raw is None else _body(raw)

    def reports(self, device: str) -> list[dict[str, Any]]:
        """Every stored report body of ``device``, oldest first (for the report's plots)."""
        with self.engine.connect() as conn:
            raws = conn.execute(select(reports.c.raw).where(reports.c.device_id == device)
                                .order_by(reports.c.time, reports.c.id)).scalars().all()
        return [b for b in map(_body, raws) if b is not None]

    def inventory(self, device: str) -> bytes | None:
        """The newest signed inventory of ``device``, as the device signed it."""
        with self.engine.connect() as conn:
            raw = conn.execute(select(inventories.c.raw).where(
                inventories.c.device_id == device)
                .order_by(inventories.c.time.desc(), inventories.c.id.desc()).limit(1)).scalar()
        return None if raw is None else bytes(raw)

    def table(self, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or datetime.now(timezone.utc)
        with self.engine.connect() as conn:
            rows = conn.execute(select(devices.c.device_id, devices.c.site, reports.c.raw)
                                .outerjoin(reports, reports.c.id == devices.c.latest_report_id)
                                .order_by(devices.c.device_id)).all()
        out = []
        for r in rows:
            body = None if r.raw is None else _body(r.raw)
            out.append(fleet_row(r.device_id, r.site,
                                 None if body is None else report_facts(body, now), now))
        return out

    def status(self, site: str | None = None, ring: str | None = None,
               now: datetime | None = None) -> list[dict[str, Any]]:
        """One row per device from the newest report's columns, site and device order."""
        now = now or datetime.now(timezone.utc)
        q = (select(devices.c.device_id, devices.c.site, devices.c.ring, reports.c.release,
                    reports.c.version, reports.c.health_ok, reports.c.health_reason,
                    reports.c.last_check, reports.c.rollbacks, reports.c.drift_max,
                    reports.c.drift_warn, reports.c.time)
             .outerjoin(reports, reports.c.id == devices.c.latest_report_id)
             .order_by(devices.c.site, devices.c.device_id))
        if site is not None:
            q = q.where(devices.c.site == site)
        if ring is not None:
            q = q.where(devices.c.ring == ring)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [_status_row(r, now) for r in rows]

    def history(self, device: str) -> dict[str, Any]:
        """Everything the ledger knows of ``device``, each list oldest first."""
        with self.engine.connect() as conn:
            dev = conn.execute(select(devices.c.device_id, devices.c.site, devices.c.ring,
                                      devices.c.keyid, devices.c.enrolled, devices.c.facts)
                               .where(devices.c.device_id == device)).first()
            if dev is None:
                raise UsageError(f"{device} is not enrolled in the ledger")
            reps = conn.execute(select(reports.c.id, reports.c.time, reports.c.release,
                                       reports.c.version, reports.c.health_ok,
                                       reports.c.rollbacks, reports.c.sha256)
                                .where(reports.c.device_id == device)
                                .order_by(reports.c.time, reports.c.id)).all()
            moves = conn.execute(select(rollouts.c.id, rollouts.c.release,
                                        rollouts.c.bundle_digest, rollouts.c.finished,
                                        rollouts.c.dry_run, rollout_devices.c.wave,
                                        rollout_devices.c.before, rollout_devices.c.after,
                                        rollout_devices.c.result, rollout_devices.c.reason,
                                        builds.c.signers)
                                 .join(rollouts, rollouts.c.id == rollout_devices.c.rollout_id)
                                 .outerjoin(builds,
                                            builds.c.bundle_digest == rollouts.c.bundle_digest)
                                 .where(rollout_devices.c.device_id == device)
                                 .order_by(rollouts.c.finished)).all()
            sticks = conn.execute(select(carried.c.time, carried.c.release, carried.c.medium,
                                         carried.c.bundle_digest)
                                  .where(carried.c.device_id == device)
                                  .order_by(carried.c.time)).all()
        return {
            "device": device, "site": dev.site, "ring": dev.ring, "keyid": dev.keyid,
            "enrolled": _iso(dev.enrolled), "facts": dev.facts,
            "reports": [{"id": r.id, "time": _iso(r.time), "release": r.release,
                         "version": r.version, "health_ok": r.health_ok,
                         "rollbacks": r.rollbacks, "sha256": r.sha256} for r in reps],
            "rollouts": [{"rollout": m.id, "release": m.release, "bundle": m.bundle_digest,
                          "finished": _iso(m.finished), "dry_run": m.dry_run, "wave": m.wave,
                          "before": m.before, "after": m.after, "result": m.result,
                          "reason": m.reason, "signers": m.signers} for m in moves],
            "carried": [{"time": _iso(c.time), "release": c.release, "medium": c.medium,
                         "bundle": c.bundle_digest} for c in sticks],
        }

    def audit(self, since: datetime | None = None, limit: int | None = None
              ) -> list[dict[str, Any]]:
        """Audit entries oldest first: all, those at or after ``since``, at most the newest
        ``limit``."""
        q = select(audit).order_by(audit.c.seq.desc())
        if since is not None:
            q = q.where(audit.c.at >= since)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q))
        return [{"seq": r.seq, "at": _iso(r.at), "actor": r.actor, "action": r.action,
                 "subject": r.subject, "detail": json.loads(r.detail), "hash": r.hash}
                for r in reversed(rows)]

    def audit_length(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(audit_head.c.seq)).scalar_one())

    def verify_audit(self) -> list[ChainProblem]:
        with self.engine.connect() as conn:
            return verify_chain(conn)


def _status_row(r: Any, now: datetime) -> dict[str, Any]:
    # Unpacked once: 10,000 rows by attribute name cost a third of hq status (profiled).
    (device, site, ring, release, version, ok, reason, checked, rollbacks, drift, warn,
     reported) = r
    reported = None if reported is None else utc(reported)
    health = ("no report" if reported is None else "no release" if release is None
              else "not checked" if ok is None else "ok" if ok else "FAILED")
    return {"device": device, "site": site, "ring": ring, "release": release,
            "version": version, "health": health, "health_ok": ok,
            "health_reason": reason, "last_check": _iso(checked),
            "rollbacks": rollbacks, "drift": drift, "drift_warn": bool(warn),
            "report_time": None if reported is None else reported.isoformat(timespec="seconds"),
            "report_age_s": None if reported is None
            else max(0, int((now - reported).total_seconds()))}
