"""``airlock report``: enroll device keys and read the reports devices send home, at headquarters.

    airlock report enroll cam-7.pub --device-id cam-7 --site north
    airlock report ingest /media/usb/airlock-reports/ --textfile /var/lib/node_exporter/airlock.prom
    airlock report ingest /media/usb/airlock-reports/ --html fleet.html   # tables and plots

``ingest`` prints the fleet table (every enrolled device, its newest report)
on stdout; each refused report is one line on stderr saying why, and the
command then exits 3. Both write to headquarters' ledger (``--db URL``, else
``FLEET/ledger.sqlite``), and the table, ``--textfile`` and ``--html`` are
read back from it; ingest also leaves each device's newest signed inventory
in ``FLEET/inventories/`` for ``airlock build --delta-from``. The work is
``bundler.hq.ledger``; this module only parses and prints.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock.command import Reported
from airlock.console import Parser, columns, json_option
from airlock.errors import RejectedError, UsageError
from airlock.files import write_atomic
from bundler.commands.options import common_parent, ledger_args, ledger_from, subcommands

if TYPE_CHECKING:
    from bundler.hq.ledger import Ledger

__all__ = ["DESCRIPTION", "EXAMPLES", "Enrolled", "Ingested", "add_arguments", "run"]

EXAMPLES = ("airlock report ingest /media/usb/airlock-reports/",)
DESCRIPTION = None


@dataclass(frozen=True)
class Enrolled(Reported):
    """A device key recorded in the ledger (``Ledger.enroll``)."""

    def text(self) -> str:
        d = self.data
        return (f"enrolled {d['device_id']}" + (f" (site {d['site']})" if d["site"] else "")
                + f" with key {d['keyid'][:16]}… in {d['fleet']}")


@dataclass(frozen=True)
class Ingested:
    """Reports taken in and refused, and the fleet table after them."""

    accepted: list[dict[str, Any]]
    refused: list[dict[str, Any]]
    devices: list[dict[str, Any]]
    fleet: str
    html: str | None
    samples: list[dict[str, Any]] = field(default_factory=list)  # sample packs taken in

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "refused": self.refused, "devices": self.devices,
                "fleet": self.fleet, "html": self.html, "samples": self.samples}

    def text(self) -> str:
        from bundler.hq.ingest import age_text

        rows = [("device", "site", "ring", "release", "health", "last check", "rollbacks",
                 "drift", "report age")]
        for r in self.devices:
            drift = "-" if r["drift"] is None else f"{r['drift']:.2f}" + (
                " !" if r["drift_warn"] else "")
            release = f"{r['release']} ({r['version']})" if r["release"] else "-"
            if r.get("variants"):
                release += " " + ",".join(f"{m}:{v}" for m, v in r["variants"].items())
            rows.append((r["device"], r["site"] or "-", r["ring"] or "-", release, r["health"],
                         (r["last_check"] or "-")[:19], "-" if r["rollbacks"] is None
                         else str(r["rollbacks"]), drift, age_text(r["report_age_s"])))
        text = [columns(rows), f"{len(self.accepted)} report(s) taken in, "
                f"{len(self.refused)} refused; fleet {self.fleet}"]
        for s in self.samples:
            text.append(f"sample pack of {s['device_id']}: {s['files']} file(s) stored in "
                        f"{s['stored']}")
        if self.html:
            text.append(f"fleet report: {self.html}")
        return "\n".join(text)

    def finish(self) -> int:
        """Exit 3 when any report was refused (each said why on stderr before the table)."""
        if self.refused:
            raise RejectedError(f"{len(self.refused)} of {len(self.accepted) + len(self.refused)}"
                                " report(s) refused and not counted (see above)")
        return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    common = Parser(add_help=False, parents=[common_parent()])
    ledger_args(common)
    json_option(common)
    add = subcommands(p, "report_cmd", parents=[common])
    e = add("enroll", "record a device's public key (printed at airlock-agent init)",
            "airlock report enroll cam-7.pub --device-id cam-7 --site north")
    e.add_argument("device_pub", type=Path, metavar="DEVICE_PUB",
                   help="the device's public key (DEVICE.pub, printed by airlock-agent init)")
    e.add_argument("--device-id", required=True, help="the device id it was initialised with")
    e.add_argument("--site", help="where the device is")
    e.add_argument("--force", action="store_true", help="replace the device's enrolled key")
    i = add("ingest", "verify reports against enrolled keys; print the fleet table",
            "airlock report ingest /media/usb/airlock-reports/ --textfile fleet.prom")
    i.add_argument("files", type=Path, nargs="+", metavar="FILE",
                   help="report files, folders of *.report.json, or sample packs (folders "
                   "written by airlock-agent samples export)")
    i.add_argument("--textfile", type=Path, metavar="FILE.prom",
                   help="also write the fleet figures for node_exporter's textfile collector")
    i.add_argument("--html", type=Path, metavar="FILE.html",
                   help="also write the fleet report: one self-contained HTML file with plots")
    i.add_argument("--decryption-key", type=Path, action="append", default=[], metavar="KEY",
                   help="private key (PEM) that opens reports a device encrypted to "
                        "headquarters (airlock-agent report --encrypt-to); repeatable")


def run(a: argparse.Namespace) -> Enrolled | Ingested:
    from bundler.build.host_config import apply_to_args
    from bundler.hq.ingest import fleet_textfile

    apply_to_args(a)
    fleet = ledger_from(a)
    if a.report_cmd == "enroll":
        return Enrolled(fleet.enroll(a.device_pub, a.device_id, a.site, force=a.force))
    keys = []
    for path in a.decryption_key:
        try:
            keys.append(path.read_bytes())
        except OSError as e:
            raise UsageError(f"cannot read --decryption-key {path}: {e.strerror}") from None
    from bundler.hq.sample_packs import PackTarget, ingest_pack, is_pack

    # Sample packs stay files in the fleet directory; whose they are, the ledger says.
    target = PackTarget(a.fleet, fleet.devices)
    packs = [ingest_pack(target, p) for p in a.files if is_pack(p)]
    results = fleet.ingest([p for p in a.files if not is_pack(p)], keys)
    refused = [(r.file, r.reason) for r in results if r.reason]
    refused += [(r.file, r.reason) for r in packs if r.reason]
    _export_inventories(fleet, a.fleet, sorted({r.device_id for r in results
                                                 if r.device_id and not r.reason}))
    rows = fleet.table()
    if a.textfile is not None:
        fleet_textfile(rows, a.textfile)
    if a.html is not None:
        _write_html(fleet, a.html)
    for file, reason in refused:
        print(f"airlock: refused {file}: {reason}", file=sys.stderr)
    return Ingested(accepted=[r.__dict__ for r in results if not r.reason],
                    refused=[{"file": f, "reason": why} for f, why in refused],
                    devices=rows, fleet=fleet.root,
                    html=None if a.html is None else str(a.html.absolute()),
                    samples=[p.__dict__ for p in packs if not p.reason])


def _export_inventories(ledger: Ledger, fleet: Path, devices: list[str]) -> None:
    """Each device's newest inventory from the ledger, where ``build --delta-from`` takes it."""
    from bundler.build.output import replace_file

    for device in devices:
        data = ledger.inventory(device)
        if data is not None:
            replace_file(fleet / "inventories" / f"{device}.inventory.json", data)


def _write_html(fleet: Ledger, path: Path) -> None:
    """The fleet report, replaced atomically (a browser never shows half of it)."""
    from bundler.hq.fleet_page import fleet_html

    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--html {path}: give a file name ending in .html")
    if path.is_dir():
        raise UsageError(f"--html {path} is a directory; give a file name ending in .html")
    html = fleet_html(fleet).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, html)
