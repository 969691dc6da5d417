"""``airlock report``: enroll device keys and read the reports devices send home, at headquarters.

    airlock report enroll cam-7.pub --device-id cam-7 --site north
    airlock report ingest /media/usb/airlock-reports/ --textfile /var/lib/node_exporter/airlock.prom
    airlock report ingest /media/usb/airlock-reports/ --html fleet.html   # tables and plots

``ingest`` prints the fleet table (every enrolled device, its newest report)
on stdout; each refused report is one line on stderr saying why, and the
command then exits 3. The work is ``bundler.hq.ingest``; this module only
parses and prints.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock.command import Reported
from airlock.console import Parser, columns, json_option
from airlock.errors import RejectedError, UsageError
from airlock.files import write_atomic
from bundler.commands.options import common_parent, subcommands

if TYPE_CHECKING:
    from bundler.hq.ingest import FleetRecords

__all__ = ["DESCRIPTION", "EXAMPLES", "Enrolled", "Ingested", "add_arguments", "run"]

EXAMPLES = ("airlock report ingest /media/usb/airlock-reports/",)
DESCRIPTION = None
_DEFAULT_FLEET = "airlock-fleet"


@dataclass(frozen=True)
class Enrolled(Reported):
    """A device key recorded in the fleet directory (``FleetRecords.enroll``)."""

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

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "refused": self.refused, "devices": self.devices,
                "fleet": self.fleet, "html": self.html}

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
    common.add_argument("--fleet", type=Path,
                        help=f"fleet directory (default $AIRLOCK_FLEET, 'fleet' in airlock.toml, "
                        f"or ./{_DEFAULT_FLEET})")
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
                   help="report files, or folders of *.report.json")
    i.add_argument("--textfile", type=Path, metavar="FILE.prom",
                   help="also write the fleet figures for node_exporter's textfile collector")
    i.add_argument("--html", type=Path, metavar="FILE.html",
                   help="also write the fleet report: one self-contained HTML file with plots")


def run(a: argparse.Namespace) -> Enrolled | Ingested:
    from bundler.build.host_config import apply_to_args
    from bundler.hq.ingest import FleetRecords, fleet_textfile

    apply_to_args(a)
    fleet = FleetRecords(a.fleet)
    if a.report_cmd == "enroll":
        return Enrolled(fleet.enroll(a.device_pub, a.device_id, a.site, force=a.force))
    results = fleet.ingest(list(a.files))
    refused = [r for r in results if r.reason]
    rows = fleet.table()
    if a.textfile is not None:
        fleet_textfile(rows, a.textfile)
    if a.html is not None:
        _write_html(fleet, a.html)
    for r in refused:
        print(f"airlock: refused {r.file}: {r.reason}", file=sys.stderr)
    return Ingested(accepted=[r.__dict__ for r in results if not r.reason],
                    refused=[{"file": r.file, "reason": r.reason} for r in refused],
                    devices=rows, fleet=str(a.fleet),
                    html=None if a.html is None else str(a.html.absolute()))


def _write_html(fleet: FleetRecords, path: Path) -> None:
    """The fleet report, replaced atomically (a browser never shows half of it)."""
    from bundler.hq.fleet_page import fleet_html

    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--html {path}: give a file name ending in .html")
    if path.is_dir():
        raise UsageError(f"--html {path} is a directory; give a file name ending in .html")
    html = fleet_html(fleet).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, html)
