"""Today's fleet directory moved into the ledger: enrolled keys first, then every stored report.

    summary = import_fleet_dir(ledger, Path("airlock-fleet"))
    summary["devices"], summary["reports"], summary["refused"]

The directory (``devices.json``, ``reports/DEVICE/*.report.json``) is read,
never changed: each key is enrolled as the directory recorded it (site and
enrolment time kept), and each stored report goes through the same checks as
a fresh ingest, so one that no longer verifies is refused and named rather
than carried over. Running it twice adds nothing the second time (a key
already enrolled is kept, a report already in the ledger is counted once).
The newest inventories follow from the reports; ``inventories/`` is not read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from airlock.errors import UsageError
from bundler.hq.ingest import FleetRecords, parse_time
from bundler.hq.ledger import Ledger

__all__ = ["import_fleet_dir"]


def import_fleet_dir(ledger: Ledger, root: Path,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    if not (root / "devices.json").is_file():
        raise UsageError(f"{root} is not an Airlock fleet directory (no devices.json)")
    fleet = FleetRecords(root)
    known = ledger.devices()
    enrolled = kept = 0
    for device_id, entry in sorted(fleet.devices().items()):
        key = fleet.key_of(device_id, entry)
        if device_id in known and known[device_id]["key"].get("keyid") == key.keyid:
            kept += 1
            continue
        when = parse_time(entry.get("enrolled"))
        ledger.enroll_key(key, device_id, entry.get("site"),
                          enrolled=when if isinstance(when, datetime) else None)
        enrolled += 1
    files = sorted((root / "reports").glob("*/*.report.json"))
    results = ledger.ingest(files, progress=progress)
    refused = [{"file": r.file, "reason": r.reason} for r in results if r.reason]
    return {"fleet": str(root), "ledger": ledger.root, "devices": enrolled,
            "devices_kept": kept, "reports": len(results) - len(refused), "refused": refused}
