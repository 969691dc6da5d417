"""Reports encrypted to headquarters (issue 30): `airlock-agent report --encrypt-to hq.pub`
on a real device; `airlock report ingest --decryption-key hq.key` opens, verifies and records
it; without the key, or with another, it is refused (exit 3) and nothing is recorded."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from bundler.hq.ledger import Ledger
from bundler.hq.ledger_db import ledger_url
from bundler.hq.ledger_schema import reports
from keys.device import REPORT_TYPE, verify_document
from keys.encryption_keys import generate_pair
from keys.keyfile import load_public_key
from tests.support.cli import run_agent, run_airlock
from tests.support.keyset import Keys


def test_an_encrypted_report_is_read_only_with_headquarters_key(
        keyset: Keys, tmp_path: Path) -> None:
    hq_key, hq_pub = generate_pair()
    (tmp_path / "hq.key").write_bytes(hq_key)
    (tmp_path / "hq.pub").write_bytes(hq_pub)
    (tmp_path / "other.key").write_bytes(generate_pair()[0])
    root = tmp_path / "cam-7"
    r = run_agent("--root", root, "init", "--trust", keyset.trust, "--device-id", "cam-7")
    assert r.returncode == 0, r.stderr
    stick = tmp_path / "stick"
    report = stick / "cam-7.report.json"
    r = run_agent("--root", root, "report", "-o", report, "--encrypt-to", tmp_path / "hq.pub",
                  "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["encrypted_to"] == ["hq.pub"]
    sealed = json.loads(report.read_bytes())
    # A JWE on the stick: no DSSE payload anyone could decode, only ciphertext.
    assert "payload" not in sealed and "ciphertext" in sealed
    fleet = tmp_path / "fleet"
    r = run_airlock("report", "enroll", root / "device.pub", "--device-id", "cam-7",
                    "--fleet", fleet)
    assert r.returncode == 0, r.stderr
    for extra in ((), ("--decryption-key", tmp_path / "other.key")):
        r = run_airlock("report", "ingest", stick, "--fleet", fleet, *extra)
        assert r.returncode == 3
        assert "encrypted" in r.stderr
        assert Ledger(ledger_url(None, fleet)).audit_length() == 1  # the enrolment only
    r = run_airlock("report", "ingest", stick, "--fleet", fleet, "--json",
                    "--decryption-key", tmp_path / "hq.key")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [a["device_id"] for a in out["accepted"]] == ["cam-7"]
    with Ledger(ledger_url(None, fleet)).engine.connect() as conn:  # as the ledger keeps it
        stored = bytes(conn.execute(select(reports.c.raw)).scalar_one())
    # Kept as the signed report inside, which verifies against the device's key.
    doc = verify_document(stored, REPORT_TYPE, key=load_public_key(root / "device.pub"))
    assert doc.body["device_id"] == "cam-7"
