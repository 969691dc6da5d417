"""Headquarters' ledger on SQLite and on a real PostgreSQL: the same tests on both databases.

Reports are generated and signed here (scripts/ledger_bench.py, the shapes
``airlock-agent report`` writes) and go through the real command lines:
``report enroll|ingest --db``, ``hq status|history|audit|import|inventory``.
PostgreSQL is a throwaway cluster made by initdb in a temp dir
(tests/support/postgres.py); each test gets its own database in it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from bundler.hq.ingest import FleetRecords
from bundler.hq.ledger import Ledger
from bundler.hq.ledger_db import HEAD, alembic_config
from bundler.hq.ledger_schema import METADATA
from keys.keyfile import write_public_key
from scripts import ledger_bench
from tests.support.cli import run_airlock, tool_env
from tests.support.keyset import Keys
from tests.support.postgres import postgres_cluster
from tests.support.spec import write_spec

REPO = Path(__file__).resolve().parents[2]
Fleet = list[tuple[Any, dict[str, Any]]]


@pytest.fixture(scope="module")
def pg_admin() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger URL on each database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq' / 'ledger.sqlite'}"
    admin: str = request.getfixturevalue("pg_admin")
    name = f"t{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin.replace("postgresql://", "postgresql+psycopg://"),
                           isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return admin.replace("/airlock?", f"/{name}?")


def _stick(fleet: Fleet, folder: Path, reports: int, start: datetime) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(reports):
        for signer, facts in fleet:
            data = ledger_bench.sample_report(signer, facts, start + timedelta(hours=n), n)
            (folder / f"{facts['device_id']}-{n}.report.json").write_bytes(data)
    return folder


def _enroll_cli(fleet: Fleet, db: str, tmp_path: Path) -> None:
    for signer, facts in fleet:
        pub = tmp_path / "pubs" / f"{facts['device_id']}.pub"
        pub.parent.mkdir(exist_ok=True)
        write_public_key(pub, signer.public_key, force=True)
        p = run_airlock("report", "enroll", pub, "--device-id", facts["device_id"], "--site",
                        facts["site"], "--db", db)
        assert p.returncode == 0, p.stderr


def _json(*args: object) -> Any:
    p = run_airlock(*args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_the_shipped_migrations_make_exactly_the_schema(db: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD
    ledger = Ledger(db)  # opening migrates an empty database
    with ledger.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), METADATA) == []
        assert set(inspect(conn).get_table_names()) >= set(METADATA.tables)
    Ledger(db)  # and opening it again changes nothing
    assert ledger.audit_length() == 0 and ledger.verify_audit() == []


def test_enroll_ingest_status_history_and_the_fleet_report_come_from_the_ledger(
        db: str, tmp_path: Path) -> None:
    fleet = ledger_bench.sample_fleet(6, sites=2)
    _enroll_cli(fleet, db, tmp_path)
    start = datetime.now(timezone.utc) - timedelta(hours=10)
    stick = _stick(fleet, tmp_path / "stick", 3, start)
    html, prom = tmp_path / "fleet.html", tmp_path / "fleet.prom"
    out = _json("report", "ingest", stick, "--db", db, "--fleet", tmp_path / "fleet",
                "--html", html, "--textfile", prom)
    assert len(out["accepted"]) == 18 and not out["refused"]
    assert [r["device"] for r in out["devices"]] == [f"cam-{i:05d}" for i in range(6)]
    assert "cam-00003" in html.read_text() and "airlock_fleet_device_info" in prom.read_text()
    # The newest inventory is exported for build --delta-from, from the ledger.
    inv = tmp_path / "fleet" / "inventories" / "cam-00001.inventory.json"
    assert json.loads(inv.read_bytes())["payloadType"].endswith("inventory.v1+json")
    exported = tmp_path / "cam-00001.inventory.json"
    _json("hq", "inventory", "cam-00001", "-o", exported, "--db", db)
    assert exported.read_bytes() == inv.read_bytes()

    status = _json("hq", "status", "--db", db, "--site", "site-01")
    assert [r["device"] for r in status["devices"]] == ["cam-00001", "cam-00003", "cam-00005"]
    assert {r["release"] for r in status["devices"]} == {"vision-1"}
    assert _json("hq", "status", "--db", db, "--ring", "canary")["devices"][0]["ring"] == "canary"
    p = run_airlock("hq", "status", "--db", db)
    assert p.returncode == 0 and "6 device(s)" in p.stdout and "cam-00004" in p.stdout

    history = _json("hq", "history", "cam-00002", "--db", db)
    assert history["facts"] == {"agent": {"version": "bench"}}  # the class facts it reported
    assert [r["time"][:13] for r in history["reports"]] == [
        (start + timedelta(hours=n)).isoformat()[:13] for n in range(3)]
    # Ingesting the same stick again counts nothing twice.
    again = _json("report", "ingest", stick, "--db", db, "--fleet", tmp_path / "fleet")
    assert all("already in the ledger" in r["stored"] for r in again["accepted"])
    assert len(_json("hq", "history", "cam-00002", "--db", db)["reports"]) == 3
    audit = _json("hq", "audit", "--db", db, "--verify")
    assert audit["verified"] is True and audit["chain_length"] == 6 + 18
    assert {e["action"] for e in audit["entries"]} == {"enroll", "ingest"}
    newest = _json("hq", "audit", "--db", db, "--limit", "2")["entries"]
    assert [e["seq"] for e in newest] == [23, 24]
    assert all(re.fullmatch(r".+@.+", e["actor"]) for e in audit["entries"])


def test_forged_and_unenrolled_reports_are_refused_and_nothing_is_written(
        db: str, tmp_path: Path) -> None:
    fleet = ledger_bench.sample_fleet(2)
    stranger = ledger_bench.sample_fleet(3)[2:]
    _enroll_cli(fleet, db, tmp_path)
    now = datetime.now(timezone.utc) - timedelta(hours=1)
    stick = tmp_path / "stick"
    stick.mkdir()
    (stick / "forged.report.json").write_bytes(   # cam-00001's name, cam-00000's key
        ledger_bench.sample_report(fleet[0][0], fleet[1][1], now, 0))
    (stick / "unenrolled.report.json").write_bytes(
        ledger_bench.sample_report(stranger[0][0], stranger[0][1], now, 0))
    p = run_airlock("report", "ingest", stick, "--db", db, "--fleet", tmp_path / "fleet")
    assert p.returncode == 3
    assert "forged" in p.stderr and "not enrolled" in p.stderr
    ledger = Ledger(db)
    assert ledger.audit_length() == 2  # the two enrolments only
    assert all(r["report_time"] is None for r in ledger.status())


def test_two_ingests_at_once_lose_nothing_and_keep_one_chain(db: str, tmp_path: Path) -> None:
    fleet = ledger_bench.sample_fleet(20)
    ledger = Ledger(db)
    ledger_bench.enroll_all(ledger, fleet)
    start = datetime.now(timezone.utc) - timedelta(hours=30)
    a = _stick(fleet[:10], tmp_path / "a", 6, start)
    b = _stick(fleet[10:], tmp_path / "b", 6, start)
    argv = [sys.executable, "-m", "bundler", "report", "ingest", "--db", db, "--fleet",
            str(tmp_path / "fleet"), "--json"]
    procs = [subprocess.Popen([*argv, str(stick)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=tool_env(), text=True)
             for stick in (a, b)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert len(json.loads(out)["accepted"]) == 60
    assert sum(len(ledger.history(f["device_id"])["reports"]) for _, f in fleet) == 120
    assert ledger.audit_length() == 20 + 120 and ledger.verify_audit() == []
    assert {r["release"] for r in ledger.status()} == {"vision-1"}


def test_a_hand_edit_of_the_audit_log_is_found_and_exits_3(db: str, tmp_path: Path) -> None:
    fleet = ledger_bench.sample_fleet(3)
    ledger = Ledger(db)
    ledger_bench.enroll_all(ledger, fleet)
    with ledger.engine.begin() as conn:  # someone rewrites who enrolled cam-00001
        conn.execute(text("UPDATE audit SET actor = 'nobody@nowhere' WHERE seq = 2"))
    p = run_airlock("hq", "audit", "--verify", "--db", db)
    assert p.returncode == 3
    assert "entry 2:" in p.stdout and "edited by hand" in p.stdout
    assert "audit chain" in p.stderr
    out = json.loads(run_airlock("hq", "audit", "--verify", "--db", db, "--json").stdout)
    assert out["verified"] is False and out["problems"][0]["seq"] == 2
    with ledger.engine.begin() as conn:  # put it back, then cut the newest entry off
        conn.execute(text("DELETE FROM audit WHERE seq >= 2"))
    problems = Ledger(db).verify_audit()
    assert problems and "cut off" in problems[-1].problem


def test_hq_import_moves_a_fleet_directory_once(db: str, tmp_path: Path) -> None:
    fleet = ledger_bench.sample_fleet(3)
    records = FleetRecords(tmp_path / "old-fleet")
    for signer, facts in fleet:
        pub = tmp_path / f"{facts['device_id']}.pub"
        write_public_key(pub, signer.public_key, force=True)
        records.enroll(pub, facts["device_id"], facts["site"])
    start = datetime.now(timezone.utc) - timedelta(hours=5)
    assert not [r for r in records.ingest([_stick(fleet, tmp_path / "s", 2, start)])
                if r.reason]
    first = _json("hq", "import", tmp_path / "old-fleet", "--db", db)
    assert (first["devices"], first["reports"], first["refused"]) == (3, 6, [])
    second = _json("hq", "import", tmp_path / "old-fleet", "--db", db)
    assert (second["devices"], second["devices_kept"]) == (0, 3)
    assert len(_json("hq", "history", "cam-00000", "--db", db)["reports"]) == 2


def test_a_bad_database_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    p = run_airlock("hq", "status", "--db", "mysql://x@y/z")
    assert p.returncode == 2 and "SQLite or PostgreSQL" in p.stderr
    p = run_airlock("hq", "status", "--db", "postgresql://nobody@/x?host=/nonexistent",
                    "--json")
    assert p.returncode == 5 and "cannot open the ledger" in json.loads(p.stdout)["error"]


def _grafana_sql(sql: str) -> str:
    """Grafana's PostgreSQL macros and the $site variable, as Grafana expands them."""
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*'1h'\)", r"date_trunc('hour', \1) AS time",
                 sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 r"\1 BETWEEN now() - interval '7 days' AND now()", sql)
    return sql.replace("$site", "'site-00','site-01'")


def test_the_grafana_dashboard_queries_run_on_the_real_schema(pg_admin: str,
                                                               tmp_path: Path) -> None:
    dash = json.loads((REPO / "docs" / "grafana" / "airlock-ledger.json").read_text())
    queries = [t["rawSql"] for p in dash["panels"] for t in p["targets"]]
    queries.append(dash["templating"]["list"][1]["query"])
    assert len(queries) >= 8
    ledger = Ledger(pg_admin)
    fleet = ledger_bench.sample_fleet(4, sites=2)
    ledger_bench.enroll_all(ledger, fleet)
    _json("report", "ingest", _stick(fleet, tmp_path / "s", 2,
                                     datetime.now(timezone.utc) - timedelta(hours=3)),
          "--db", pg_admin, "--fleet", tmp_path / "fleet")
    with ledger.engine.connect() as conn:
        results = [conn.execute(text(_grafana_sql(q))).all() for q in queries]
    assert sum(r.devices for r in results[0]) == 4  # health panel counts every device
    assert sum(r.reports for r in results[2]) == 8   # reports taken in, in the time range
    assert len(results[6]) == 4 + 8                  # the audit panel lists every write


def test_build_record_and_a_rollout_answer_who_signed_what_a_device_installed(
        db: str, tmp_path: Path, keyset: Keys) -> None:
    from bundler.hq.ledger_records import record_carried, record_rollout

    fleet = ledger_bench.sample_fleet(2)
    ledger = Ledger(db)
    ledger_bench.enroll_all(ledger, fleet)
    bundle = tmp_path / "vision.airlock"
    built = _json("build", write_spec(tmp_path, sequence=4), "--key", keyset.release_key,
                  "--no-check", "-o", bundle, "--record", "--db", db)
    report = {"release": "vision-4", "dry_run": False, "waves": [["cam-00000"], ["cam-00001"]],
              "halted": True, "exit_code": 4, "devices": [
                  {"device": "cam-00000", "wave": 1, "before": "vision-3", "after": "vision-4",
                   "result": "installed", "ok": True, "reason": None, "seconds": 2.5},
                  {"device": "cam-00001", "wave": 2, "before": "vision-3", "after": "vision-3",
                   "result": "failed", "ok": False, "reason": "health check failed",
                   "seconds": 3.0}]}
    record_rollout(ledger, report, bundle)
    record_carried(ledger, bundle, "stick:USB-7", ["cam-00000"])
    history = _json("hq", "history", "cam-00000", "--db", db)
    [moved] = history["rollouts"]
    assert (moved["release"], moved["after"], moved["wave"]) == ("vision-4", "vision-4", 1)
    assert moved["signers"] == built["signers"] and moved["bundle"].startswith("sha256:")
    assert history["carried"][0]["medium"] == "stick:USB-7"
    p = run_airlock("hq", "history", "cam-00000", "--db", db)
    assert "rollout  #1 vision-4 wave 1: vision-3 -> vision-4 installed" in p.stdout
    actions = [e["action"] for e in _json("hq", "audit", "--db", db)["entries"]]
    assert actions == ["enroll", "enroll", "build", "rollout", "carried"]

    # build --delta-from ledger:DEVICE reads the device's newest inventory from the ledger.
    stick = _stick(fleet, tmp_path / "stick", 1, datetime.now(timezone.utc))
    _json("report", "ingest", stick, "--db", db, "--fleet", tmp_path / "fleet")
    delta = _json("build", write_spec(tmp_path, sequence=5), "--key", keyset.release_key,
                  "--no-check", "-o", tmp_path / "delta.airlock", "--delta-from",
                  "ledger:cam-00001", "--db", db)
    assert delta["delta"]["inventories"] == ["cam-00001"]
    p = run_airlock("build", write_spec(tmp_path, sequence=5), "--key", keyset.release_key,
                    "--no-check", "-o", tmp_path / "x.airlock", "--delta-from",
                    "ledger:cam-00042", "--db", db)
    assert p.returncode == 2 and "holds no inventory of 'cam-00042'" in p.stderr


def test_the_scale_benchmark_smoke_runs_the_same_code(tmp_path: Path, capsys: Any) -> None:
    from scripts import bench

    rows = bench.bench_ledger(bench.Ctx(tmp_path, 1, 1, True))
    assert [r.what.split(":")[0] for r in rows] == ["ledger sqlite"] * 4
    assert "reports/s" in rows[0].figure and rows[1].target.startswith("< 1 s: ")
    assert ledger_bench.main(["--devices", "3", "--reports", "2", "--db", "postgresql",
                              "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["database"], out["reports"], out["status_rows"]) == ("postgresql", 6, 3)
    assert out["audit_intact"] is True


def test_a_recorded_build_names_the_sbom_it_carries(tmp_path: Path, keyset: Keys) -> None:
    """`build --record` of a spec with `policy: {sbom: true}` keeps, in the builds table, the
    digest of the SBOM the bundle carries: the one `airlock inspect --sbom` prints."""
    db = f"sqlite:///{tmp_path / 'hq' / 'ledger.sqlite'}"
    bundle = tmp_path / "vision.airlock"
    _json("build", write_spec(tmp_path, extra={"policy": {"sbom": True}}), "--key",
          keyset.release_key, "--no-check", "-o", bundle, "--record", "--db", db)
    engine = create_engine(db)
    with engine.connect() as conn:
        sbom = conn.execute(text("SELECT sbom FROM builds")).scalar_one()
    engine.dispose()
    evidence = _json("inspect", bundle)["supply_chain"]["evidence"]
    assert sbom == next(e["manifest"] for e in evidence if e["kind"] == "sbom")
