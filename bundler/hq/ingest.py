"""Device reports at headquarters: enroll device keys, ingest signed reports, the fleet table.

A device prints its public key at ``airlock-agent init``; headquarters
records it once, then takes in the reports that come home on sticks::

    fleet = FleetRecords(Path("fleet"))
    fleet.enroll(Path("cam-7.pub"), "cam-7", site="north")
    results = fleet.ingest([Path("/media/usb/airlock-reports/cam-7.report.json")])
    rows = fleet.table()            # device, site, ring, release, health, last check, ...

A report counts only when its signature verifies against the key enrolled
for the device it names (``keys.device.verify_document`` decides); anything
else is refused with a one-line reason and changes nothing: a report from a
device nobody enrolled, one signed by another key (forged), one whose bytes
changed after signing (altered), and one whose embedded inventory is not the
same device's. The fleet directory::

    FLEET/devices.json                          enrolled devices: id, site, public key
    FLEET/reports/DEVICE/TIME.report.json       every verified report, as it came
    FLEET/inventories/DEVICE.inventory.json     the newest signed inventory of each device,
                                                what ``airlock build --delta-from`` takes
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key

from airlock.errors import AirlockError, FormatError, SignatureError, UsageError
from airlock.files import MediumError, read_on_medium
from airlock.format.ocicrypt import is_sealed, unseal
from airlock.limits import MAX_DEVICE_DOCUMENT_BYTES
from bundler.build.output import replace_file
from bundler.hq.report_shape import ReportFacts, report_facts
from keys.device import INVENTORY_TYPE, REPORT_TYPE, DeviceDocument, verify_document
from keys.keyfile import load_public_key
from keys.release import is_plain_name

__all__ = ["FleetRecords", "Ingested", "age_text", "fleet_row", "fleet_textfile", "parse_time",
           "read_returned", "report_files", "verify_report"]


@dataclass
class Ingested:
    """One report file taken in, or refused (``reason`` set)."""

    file: str
    device_id: str | None = None
    reason: str | None = None
    stored: str | None = None


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole, through the bundler's one way of writing beside an output."""
    replace_file(path, data)


def parse_time(text: object) -> datetime | None:
    """A report's ISO time (``Z`` or an offset; naive is UTC), or None when it is not one."""
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def read_returned(path: Path, decryption_keys: Sequence[bytes]) -> bytes:
    """One report file off a returned stick, opened when it was sealed to headquarters.

    Read as removable media is (a FIFO must not hang ingest, a link is not followed);
    MediumError, OSError or an AirlockError (a sealed report and no key that opens it)
    say why it was not read."""
    data = read_on_medium(path.parent, path.name, MAX_DEVICE_DOCUMENT_BYTES)
    if is_sealed(data):
        if not decryption_keys:
            raise UsageError("it is encrypted; give headquarters' key with --decryption-key")
        data = unseal(data, decryption_keys)
    return data


class FleetRecords:
    """The enrolled devices and what their reports said, under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.devices_file = root / "devices.json"

    # -- enrolment -----------------------------------------------------------
    def devices(self) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads(self.devices_file.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read {self.devices_file}: {e}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("devices"), dict):
            raise UsageError(f"{self.devices_file} is not an Airlock fleet file")
        return dict(raw["devices"])

    def key_of(self, device_id: str, entry: dict[str, Any]) -> Key:
        try:
            pub = dict(entry["key"])
            return Key.from_dict(str(pub.pop("keyid")), pub)
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{self.devices_file}: device {device_id}: bad key ({e})") from None

    def enroll(self, pub: Path, device_id: str, site: str | None = None, *,
               force: bool = False) -> dict[str, Any]:
        if not is_plain_name(device_id):
            raise UsageError(f"--device-id {device_id!r} must be letters, digits, '.', '_' "
                             "or '-'")
        key = load_public_key(pub)
        devices = self.devices()
        for other, entry in devices.items():
            if other != device_id and entry.get("key", {}).get("keyid") == key.keyid:
                raise UsageError(f"key {key.keyid[:16]}… is already enrolled for {other}")
        old = devices.get(device_id)
        if old is not None and old.get("key", {}).get("keyid") != key.keyid and not force:
            raise UsageError(f"{device_id} is enrolled with another key "
                             f"({str(old['key'].get('keyid'))[:16]}…); --force replaces it")
        entry = {"device_id": device_id, "site": site, "key": {"keyid": key.keyid,
                                                               **key.to_dict()},
                 "enrolled": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        devices[device_id] = entry
        _write(self.devices_file,
               (json.dumps({"devices": devices}, indent=2, sort_keys=True) + "\n").encode())
        return {"device_id": device_id, "site": site, "keyid": key.keyid,
                "fleet": str(self.root), "replaced": old is not None}

    # -- ingest --------------------------------------------------------------
    def verify(self, data: bytes) -> tuple[DeviceDocument, bytes]:
        """A report checked against its device's enrolled key, and its inventory's bytes."""
        devices = self.devices()
        return verify_report(data, lambda d: self.key_of(d, devices[d]) if d in devices else None)

    def ingest(self, files: list[Path], decryption_keys: Sequence[bytes] = ()) -> list[Ingested]:
        """Verify and record reports; one encrypted to headquarters is opened with
        ``decryption_keys`` first (PEM private keys) and kept as the signed report inside."""
        out: list[Ingested] = []
        for path in report_files(files):
            item = Ingested(str(path))
            out.append(item)
            try:
                data = read_returned(path, decryption_keys)
                doc, inv_bytes = self.verify(data)
            except MediumError as e:
                item.reason = f"not read: {e}"
                continue
            except OSError as e:
                item.reason = f"cannot read: {e.strerror}"
                continue
            except AirlockError as e:
                item.reason = str(e)
                continue
            device = str(doc.body["device_id"])
            item.device_id = device
            when = parse_time(doc.body.get("time")) or datetime.now(timezone.utc)
            stamp = when.strftime("%Y%m%dT%H%M%SZ")
            stored = self.root / "reports" / device / f"{stamp}.report.json"
            _write(stored, data)
            item.stored = str(stored)
            latest = self.latest(device)
            if latest is None or (parse_time(latest.get("time")) or when) <= when:
                _write(self.inventory_path(device), inv_bytes)
        return out

    def inventory_path(self, device: str) -> Path:
        return self.root / "inventories" / f"{device}.inventory.json"

    def latest(self, device: str) -> dict[str, Any] | None:
        """The newest stored report body of ``device`` (stored reports were verified)."""
        folder = self.root / "reports" / device
        try:
            names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".report.json"))
        except OSError:
            return None
        for name in reversed(names):
            try:
                body = verify_document((folder / name).read_bytes(), REPORT_TYPE).body
                report_facts(body)  # one stored before shapes were checked is passed over
            except (OSError, AirlockError):
                continue
            return body
        return None

    def reports(self, device: str) -> list[dict[str, Any]]:
        """Every stored report body of ``device``, oldest first (for the report's plots)."""
        folder = self.root / "reports" / device
        try:
            names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".report.json"))
        except OSError:
            return []
        bodies = []
        for name in names:
            try:
                body = verify_document((folder / name).read_bytes(), REPORT_TYPE).body
                report_facts(body)
                bodies.append(body)
            except (OSError, AirlockError):
                continue
        return bodies

    # -- the table -----------------------------------------------------------
    def table(self, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or datetime.now(timezone.utc)
        rows = []
        for device, entry in sorted(self.devices().items()):
            body = self.latest(device)
            rows.append(fleet_row(device, entry.get("site"),
                             None if body is None else report_facts(body, now), now))
        return rows


def verify_report(data: bytes, enrolled_key: Callable[[str], Key | None]
                  ) -> tuple[DeviceDocument, bytes]:
    """A report checked against the key ``enrolled_key(device)`` gives, and its inventory's bytes.

    The one check both the fleet directory and the ledger (``bundler.hq.ledger``) run.
    """
    doc = verify_document(data, REPORT_TYPE)  # altered or not a report: refused here
    claimed = doc.body.get("device_id")
    enrolled = enrolled_key(claimed) if isinstance(claimed, str) else None
    if enrolled is None:
        raise SignatureError(f"report from device {str(claimed)[:64]!r}, which is not "
                             f"enrolled (key {doc.keyid[:16]}…); run 'airlock report "
                             "enroll DEVICE.pub --device-id ID' first")
    if enrolled.keyid != doc.keyid:
        raise SignatureError(f"report claims to come from {claimed} but is signed by key "
                             f"{doc.keyid[:16]}…, not its enrolled key "
                             f"{enrolled.keyid[:16]}… (forged)")
    doc = verify_document(data, REPORT_TYPE, key=enrolled)
    report_facts(doc.body)  # odd shapes cost this report, never the fleet's ingest
    inventory = doc.body.get("inventory")
    if not isinstance(inventory, dict):
        raise FormatError("report carries no signed inventory")
    inv_bytes = (json.dumps(inventory, indent=2, sort_keys=True) + "\n").encode()
    inv = verify_document(inv_bytes, INVENTORY_TYPE, key=enrolled)
    if inv.body.get("device_id") != claimed:
        raise SignatureError(f"the inventory inside the report of {claimed} is another "
                             "device's")
    return doc, inv_bytes


def report_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.name.endswith(".report.json")))
        else:
            out.append(p)
    return out


def fleet_row(device: str, site: Any, facts: ReportFacts | None,
         now: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {"device": device, "site": site if isinstance(site, str) else None,
                           "ring": None, "release": None,
                           "version": None, "health": "no report", "health_ok": None,
                           "last_check": None, "rollbacks": None, "drift": None,
                           "drift_warn": False, "report_time": None, "report_age_s": None,
                           "challenger": None, "shadow_agreement": None,
                           "variants": {}}
    if facts is None:
        return row
    active = facts.release is not None
    row.update({
        "ring": facts.ring,
        "release": facts.release,
        "version": facts.version,
        "health": ("no release" if not active else "not checked" if facts.health_ok is None
                   else "ok" if facts.health_ok else "FAILED"),
        "health_ok": facts.health_ok,
        "health_reason": facts.health_reason,
        "last_check": None if facts.last_check is None else _iso(facts.last_check),
        "rollbacks": facts.rollbacks,
        "drift": max(facts.drift.values(), default=None),
        "drift_warn": facts.drift_warn,
        "drift_models": dict(facts.drift),
        "challenger": facts.challenger,
        "shadow_agreement": facts.shadow_agreement,
        "variants": dict(facts.variants),  # which variant of each model the device runs
        "report_time": _iso(facts.time),
        "report_age_s": max(0, int((now - facts.time).total_seconds())),
    })
    return row


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def age_text(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def fleet_textfile(rows: list[dict[str, Any]], path: Path) -> None:
    """The fleet figures as a Prometheus textfile (node_exporter's textfile collector)."""
    from prometheus_client import CollectorRegistry, write_to_textfile
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    if not path.name.endswith(".prom"):
        raise UsageError(f"--textfile {path}: node_exporter reads only files ending in .prom")

    class _FleetCollector(Collector):
        def collect(self) -> Any:
            info = GaugeMetricFamily("airlock_fleet_device_info", "A device and what it runs.",
                                     labels=["device", "site", "ring", "release", "version"])
            ok = GaugeMetricFamily("airlock_fleet_device_health_ok",
                                   "Last health check of the device's active release passed.",
                                   labels=["device", "site"])
            checked = GaugeMetricFamily("airlock_fleet_last_check_timestamp_seconds",
                                        "When the device last checked its active release.",
                                        labels=["device", "site"])
            reported = GaugeMetricFamily("airlock_fleet_report_timestamp_seconds",
                                         "When the device wrote its newest report.",
                                         labels=["device", "site"])
            rollbacks = CounterMetricFamily("airlock_fleet_rollbacks",
                                            "Rollbacks the device's journal records.",
                                            labels=["device", "site"])
            drift = GaugeMetricFamily("airlock_fleet_drift_psi",
                                      "Input drift (PSI) per model in the newest report.",
                                      labels=["device", "site", "model"])
            for r in rows:
                dev = [r["device"], r["site"] or ""]
                info.add_metric([*dev, r["ring"] or "", r["release"] or "", r["version"] or ""],
                                1)
                if r["health_ok"] is not None:
                    ok.add_metric(dev, 1.0 if r["health_ok"] else 0.0)
                for fam, key in ((checked, "last_check"), (reported, "report_time")):
                    t = parse_time(r.get(key)) if r.get(key) else None
                    if t is not None:
                        fam.add_metric(dev, t.timestamp())
                if r["rollbacks"] is not None:
                    rollbacks.add_metric(dev, r["rollbacks"])
                for model, psi in sorted((r.get("drift_models") or {}).items()):
                    if isinstance(psi, int | float):
                        drift.add_metric([*dev, model], float(psi))
            return [info, ok, checked, reported, rollbacks, drift]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FleetCollector())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
