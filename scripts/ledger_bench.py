"""The ledger at scale: N devices x M signed reports ingested into SQLite and PostgreSQL.

    python -m scripts.ledger_bench --devices 10000 --reports 20          # both databases
    python -m scripts.ledger_bench --devices 200 --reports 3 --db sqlite  # a small run

Reports are generated and signed here (one ed25519 key per device, a report
with a signed inventory inside, as ``airlock-agent report`` writes them),
enrolled, then ingested through ``Ledger.ingest_bytes`` -- the same code
``airlock report ingest`` runs, signature checks included -- in chunks of
``_CHUNK`` reports; only the ingest is timed, not the generation. Then
``airlock hq status --json`` is run as a command (wall time, interpreter
start included) and ``Ledger.status()`` is timed in-process (median of 3).
PostgreSQL is a throwaway cluster (tests/support/postgres.py; needs root or
the postgres binaries). scripts/bench.py ``--only ledger`` runs it too, and
its ``--quick`` smoke is part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_CHUNK = 5000


def sample_device(device_id: str, site: str, ring: str) -> tuple[Any, dict[str, Any]]:
    """A device's signer and the facts its reports repeat."""
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner.generate_ed25519(), {"device_id": device_id, "site": site, "ring": ring}


def sample_report(signer: Any, facts: dict[str, Any], when: datetime, n: int) -> bytes:
    """One signed report of the shape ``airlock-agent report`` writes (the fields HQ reads)."""
    from keys.device import INVENTORY_TYPE, REPORT_TYPE, sign_document

    device, ring = facts["device_id"], facts["ring"]
    release = f"vision-{1 + n // 7}"
    stamp = when.isoformat(timespec="seconds")
    inventory = {"kind": "inventory", "device_id": device, "ring": ring, "time": stamp,
                 "agent": {"version": "bench"}, "active": release, "previous": None,
                 "releases": [{"id": release, "name": "vision", "version": f"1.{n // 7}.0",
                               "sequence": 1 + n // 7, "models": [], "images": []}],
                 "blobs": []}
    ok = (n + len(device)) % 13 != 0
    body = {
        "kind": "report", "device_id": device, "ring": ring, "agent": {"version": "bench"},
        "time": stamp,
        "status": {"active": {"id": release, "version": f"1.{n // 7}.0",
                              "health": {"ok": ok, "reason": None if ok else "p95 over budget",
                                         "time": stamp}},
                   "drift": {"models": {"detector": {"psi": round((n % 10) / 40, 3),
                                                     "warn": n % 10 > 7}}}},
        "counts": {"installs": {}, "rejected": {},
                   "rollbacks": [{"result": "ok", "trigger": "health", "count": n % 3}]},
        "journal": {"since": "last", "entries": []},
        "inventory": json.loads(sign_document(inventory, INVENTORY_TYPE, signer)),
    }
    return sign_document(body, REPORT_TYPE, signer)


def sample_fleet(devices: int, sites: int = 20) -> list[tuple[Any, dict[str, Any]]]:
    rings = ["canary", "prod", "prod", "prod"]
    return [sample_device(f"cam-{i:05d}", f"site-{i % sites:02d}", rings[i % len(rings)])
            for i in range(devices)]


def enroll_all(ledger: Any, fleet: list[tuple[Any, dict[str, Any]]]) -> None:
    for signer, facts in fleet:
        ledger.enroll_key(signer.public_key, facts["device_id"], facts["site"])


def _chunks(fleet: list[tuple[Any, dict[str, Any]]], reports: int,
            start: datetime) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for n in range(reports):
        when = start + timedelta(hours=n)
        for signer, facts in fleet:
            chunk.append(sample_report(signer, facts, when, n))
            if len(chunk) >= _CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def db_bytes(ledger: Any) -> int:
    from sqlalchemy import text

    if ledger.engine.dialect.name == "sqlite":
        return Path(str(ledger.engine.url.database)).stat().st_size
    with ledger.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar())


def hq_status_wall(url: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "bundler", "hq", "status", "--db", url, "--json"],
                       capture_output=True, env=env, check=False)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode(errors="replace"))
    return wall


def run_one(url: str, devices: int, reports: int) -> dict[str, Any]:
    from bundler.hq.ingest import Ingested
    from bundler.hq.ledger import Ledger

    ledger = Ledger(url)
    fleet = sample_fleet(devices)
    enroll_all(ledger, fleet)
    start = datetime.now(timezone.utc) - timedelta(hours=reports + 1)
    taken = refused = 0
    ingest_s = 0.0
    for chunk in _chunks(fleet, reports, start):
        items = [(Ingested(f"report-{i}"), data) for i, data in enumerate(chunk)]
        t = time.perf_counter()
        ledger.ingest_bytes(items)
        ingest_s += time.perf_counter() - t
        refused += sum(1 for item, _ in items if item.reason)
        taken += sum(1 for item, _ in items if not item.reason)
    inner = []
    for _ in range(3):
        t = time.perf_counter()
        rows = ledger.status()
        inner.append(time.perf_counter() - t)
    return {"database": ledger.engine.dialect.name, "devices": devices,
            "reports": taken, "refused": refused, "ingest_s": round(ingest_s, 2),
            "reports_per_s": round(taken / ingest_s, 1) if ingest_s else None,
            "status_rows": len(rows), "status_query_s": round(statistics.median(inner), 3),
            "hq_status_command_s": round(hq_status_wall(url), 3),
            "db_mib": round(db_bytes(ledger) / 2**20, 1),
            "audit_intact": not ledger.verify_audit()}


@contextmanager
def database(kind: str, work: Path) -> Iterator[str]:
    """A fresh ledger URL: a SQLite file under ``work``, or a throwaway PostgreSQL cluster."""
    if kind == "sqlite":
        yield f"sqlite:///{work / 'ledger.sqlite'}"
        return
    from tests.support.postgres import postgres_cluster

    with postgres_cluster(fsync=True) as url:
        yield url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--reports", type=int, default=20, help="reports per device")
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if a.db == "both" else [a.db]
    results = []
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="airlock-ledger-bench-") as work, \
                database(kind, Path(work)) as url:
            results.append(run_one(url, a.devices, a.reports))
            print(json.dumps(results[-1]) if a.json else
                  "  ".join(f"{k}={v}" for k, v in results[-1].items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
