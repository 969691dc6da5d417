"""The ledger's tables: one schema for SQLite and PostgreSQL, read by code, migrations and Grafana.

    from bundler.hq.ledger_schema import METADATA, devices, reports
    select(devices.c.device_id, devices.c.site).where(devices.c.ring == "canary")

Every table headquarters keeps, with the raw signed bytes beside the facts read
from them (a report is evidence: the bytes are what a later reader verifies
again, the columns are what queries and dashboards read):

* ``devices``       enrolled devices: key, site, ring, class facts, newest report
* ``reports``       every verified report, its raw signed bytes and its facts
* ``inventories``   every signed inventory a report carried (``--delta-from`` input)
* ``builds``        bundles built or recorded: digest, spec digest, signers, SBOM
* ``signatures``    signatures added to a build later (``airlock sign --record``)
* ``rollouts``      a rollout's release, waves and outcome; ``rollout_devices``
                    each device's wave, before/after and result
* ``carried``       which bundle went where (a push, a stick)
* ``audit``         the append-only, hash-chained log of every write; ``audit_head``
                    its one-row tip, locked by every writer so the chain stays a line

Times are UTC ``timestamptz`` on PostgreSQL (Grafana's ``$__timeFilter`` reads
them) and ISO text on SQLite. The migrations in ``bundler/hq/migrations/``
create exactly these tables; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["METADATA", "audit", "audit_head", "builds", "carried", "devices", "inventories",
           "reports", "rollout_devices", "rollouts", "signatures"]

METADATA = MetaData()
_NAME = 128  # a device id, a release id: plain names (keys.signed_fields)
_DIGEST = 80  # "sha256:" + 64 hex


def _time(name: str, nullable: bool = True) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


devices = Table(
    "devices", METADATA,
    Column("device_id", String(_NAME), primary_key=True),
    Column("keyid", String(_DIGEST), nullable=False, unique=True),
    Column("key", JSON, nullable=False),
    Column("site", String(_NAME)),
    Column("ring", String(_NAME)),
    Column("facts", JSON),
    _time("enrolled", False),
    Column("latest_report_id", BigInteger),
)

reports = Table(
    "reports", METADATA,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("device_id", String(_NAME), ForeignKey("devices.device_id"), nullable=False),
    _time("time", False),
    _time("received", False),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("raw", LargeBinary, nullable=False),
    Column("ring", String(_NAME)),
    Column("release", String(_NAME)),
    Column("version", String(512)),
    Column("health_ok", Boolean),
    Column("health_reason", String(512)),
    _time("last_check"),
    Column("rollbacks", Integer, nullable=False, default=0),
    Column("drift_max", Float),
    Column("drift_warn", Boolean, nullable=False, default=False),
    Index("reports_device_time", "device_id", "time"),
)

inventories = Table(
    "inventories", METADATA,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("device_id", String(_NAME), ForeignKey("devices.device_id"), nullable=False),
    Column("report_id", BigInteger, ForeignKey("reports.id"), nullable=False, unique=True),
    _time("time", False),
    Column("raw", LargeBinary, nullable=False),
    Index("inventories_device_time", "device_id", "time"),
)

builds = Table(
    "builds", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bundle_digest", String(_DIGEST), nullable=False, unique=True),
    Column("release", String(_NAME), nullable=False),
    Column("version", String(512)),
    Column("spec_digest", String(_DIGEST)),
    Column("signers", JSON, nullable=False),
    Column("sbom", String(1024)),
    Column("path", String(4096)),
    _time("recorded", False),
)

signatures = Table(
    "signatures", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("build_id", Integer, ForeignKey("builds.id"), nullable=False),
    Column("keyid", String(_DIGEST), nullable=False),
    _time("added", False),
)

rollouts = Table(
    "rollouts", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("release", String(_NAME), nullable=False),
    Column("bundle_digest", String(_DIGEST)),
    Column("waves", JSON, nullable=False),
    Column("halted", Boolean, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("exit_code", Integer, nullable=False),
    _time("finished", False),
)

rollout_devices = Table(
    "rollout_devices", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Integer, ForeignKey("rollouts.id"), nullable=False),
    Column("device_id", String(_NAME), nullable=False),
    Column("wave", Integer),
    Column("before", String(_NAME)),
    Column("after", String(_NAME)),
    Column("result", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("reason", Text),
    Column("seconds", Float),
    Index("rollout_devices_device", "device_id"),
)

carried = Table(
    "carried", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bundle_digest", String(_DIGEST)),
    Column("release", String(_NAME)),
    Column("device_id", String(_NAME)),
    Column("medium", String(512), nullable=False),
    _time("time", False),
    Index("carried_device", "device_id"),
)

audit = Table(
    "audit", METADATA,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    _time("at", False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("audit_at", "at"),
)

audit_head = Table(
    "audit_head", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)
