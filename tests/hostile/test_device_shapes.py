"""Headquarters and the gateway read what devices say into typed, bounded objects first.

Issue 24, class 6. A device's signature says who wrote a document, not that
its fields have the expected types; through the real command line:

* a validly signed report with a list where the ring belongs, a text count or
  a time in 2099 is refused in one line, and the rest of the fleet is
  ingested (exit 3, not 1), now and at every later ingest;
* a validly self-signed inventory with odd types is refused by
  ``inventory show`` in one line (exit 3), not a traceback;
* a device answering ``status --json`` with odd types costs that device's
  rollout row (``bundler.fleet.device_status``, exit 3 naming the field).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airlock.errors import FormatError
from bundler.fleet.device_status import device_status
from keys.device import INVENTORY_TYPE, REPORT_TYPE, sign_document
from keys.keyfile import load_signer
from tests.support.cli import run_airlock

_TIME = "2024-01-02T00:00:00+00:00"


def _device_key(d: Path, device: str) -> Path:
    r = run_airlock("keys", "generate", "device", "--dir", d / device, "--no-passphrase")
    assert r.returncode == 0, r.stderr
    return d / device


def _inventory(device: str, **odd: Any) -> dict[str, Any]:
    inv = {"kind": "inventory", "device_id": device, "ring": "canary", "time": _TIME,
           "active": "vision-1", "previous": None, "blobs": [], "sequences": {"vision": 1},
           "releases": [{"id": "vision-1", "name": "vision", "version": "1.0", "sequence": 1,
                         "models": [], "images": []}]}
    return {**inv, **odd}


def _report(key_dir: Path, device: str, **odd: Any) -> bytes:
    signer = load_signer(key_dir / "device.key")
    inv = json.loads(sign_document(_inventory(device), INVENTORY_TYPE, signer))
    body = {"kind": "report", "device_id": device, "ring": "canary", "time": _TIME,
            "status": {"active": {"id": "vision-1", "version": "1.0",
                                  "health": {"ok": True, "time": _TIME}}},
            "counts": {"installs": {}, "rejected": {}, "rollbacks": []},
            "journal": {}, "inventory": inv}
    return sign_document({**body, **odd}, REPORT_TYPE, signer)


ODD_REPORTS = {
    "ring-list": {"ring": ["canary", "prod"]},
    "time-2099": {"time": "2099-01-01T00:00:00+00:00"},
    "count-text": {"counts": {"rollbacks": [{"result": "ok", "count": "many"}]}},
    "status-list": {"status": ["active"]},
    "health-ok-text": {"status": {"active": {"id": "vision-1", "health": {"ok": "yes"}}}},
    "psi-text": {"status": {"drift": {"models": {"m": {"psi": "high"}}}}},
}


@pytest.mark.parametrize("odd", list(ODD_REPORTS), ids=list(ODD_REPORTS))
def test_one_odd_report_is_refused_and_the_fleet_ingested(tmp_path: Path, odd: str) -> None:
    fleet, stick = tmp_path / "fleet", tmp_path / "stick"
    stick.mkdir()
    for device in ("cam-a", "cam-b"):
        key_dir = _device_key(tmp_path, device)
        r = run_airlock("report", "enroll", key_dir / "device.pub", "--device-id", device,
                        "--fleet", fleet)
        assert r.returncode == 0, r.stderr
        edit = ODD_REPORTS[odd] if device == "cam-b" else {}
        (stick / f"{device}.report.json").write_bytes(_report(key_dir, device, **edit))

    for _ in range(2):  # and again: nothing stored makes a later ingest fail
        r = run_airlock("report", "ingest", stick, "--fleet", fleet, "--json")
        assert r.returncode == 3, r.stderr
        refused = [ln for ln in r.stderr.splitlines() if ln.startswith("airlock: refused")]
        assert len(refused) == 1 and "cam-b.report.json: report field" in refused[0], r.stderr
        doc, _ = json.JSONDecoder().raw_decode(r.stdout)  # the table, then the exit 3
        rows = {row["device"]: row for row in doc["devices"]}
        assert rows["cam-a"]["release"] == "vision-1" and rows["cam-a"]["ring"] == "canary"
        assert rows["cam-b"]["health"] == "no report"


ODD_INVENTORIES = {
    "releases-map": {"releases": {"vision-1": 1}},
    "release-no-name": {"releases": [{"id": "vision-1", "version": 1, "sequence": 1}]},
    "release-models-number": {"releases": [{"id": "vision-1", "name": "vision",
                                            "version": "1.0", "sequence": 1, "models": 3}]},
    "ring-list": {"ring": ["canary"]},
    "previous-number": {"previous": 7},
}


@pytest.mark.parametrize("odd", list(ODD_INVENTORIES), ids=list(ODD_INVENTORIES))
def test_inventory_show_refuses_odd_types_in_one_line(tmp_path: Path, odd: str) -> None:
    key_dir = _device_key(tmp_path, "cam-a")
    path = tmp_path / "cam-a.inventory.json"
    path.write_bytes(sign_document(_inventory("cam-a", **ODD_INVENTORIES[odd]), INVENTORY_TYPE,
                                   load_signer(key_dir / "device.key")))
    r = run_airlock("inventory", "show", path)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("airlock: error: inventory "), lines


def test_a_good_inventory_still_shows(tmp_path: Path) -> None:
    key_dir = _device_key(tmp_path, "cam-a")
    path = tmp_path / "cam-a.inventory.json"
    path.write_bytes(sign_document(_inventory("cam-a"), INVENTORY_TYPE,
                                   load_signer(key_dir / "device.key")))
    r = run_airlock("inventory", "show", path)
    assert r.returncode == 0, r.stderr
    assert "release vision-1: vision 1.0 (sequence 1)" in r.stdout


@pytest.mark.parametrize("doc,field", [
    ({"disk": ["free"]}, "disk"),
    ({"damage": {"0": "x"}}, "damage"),
    ({"damage": 3}, "damage"),
    ({"ring": ["canary"]}, "ring"),
    ({"active": {"id": "vision-1", "name": "vision", "sequence": "3"}}, "active.sequence"),
    ({"active": "vision-1"}, "active"),
])
def test_an_odd_device_status_is_one_refused_row(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(FormatError, match=f"'{field}'"):
        device_status(doc)
    ok = device_status({"active": {"id": "vision-3", "name": "vision", "sequence": 3},
                        "ring": "canary", "disk": {"free": 10}, "damage": ["a\x1b[2Jb"]})
    assert (ok.release, ok.sequence_of("vision"), ok.ring, ok.free_bytes, ok.damage) == (
        "vision-3", 3, "canary", 10, "a?[2Jb")
