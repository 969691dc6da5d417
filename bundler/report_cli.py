"""``airlock report``: the command line of device reports at headquarters.

    airlock report enroll cam-7.pub --device-id cam-7 --site north
    airlock report ingest /media/usb/airlock-reports/ --textfile /var/lib/node_exporter/airlock.prom
    airlock report ingest cam-7.report.json --json
    airlock report ingest /media/usb/airlock-reports/ --html fleet.html   # tables and plots

``ingest`` prints the fleet table (every enrolled device, its newest report)
on stdout; each refused report is one line on stderr saying why, and the
command then exits 3. The work is ``bundler.hq.ingest``; this module only
parses and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock.console import add_command, emit, json_option

if TYPE_CHECKING:
    from bundler.hq.ingest import FleetRecords
from airlock.errors import RejectedError, UsageError

__all__ = ["add_report_command", "run_report"]

_DEFAULT_FLEET = "airlock-fleet"


def add_report_command(cmd: Callable[[str, str, str], argparse.ArgumentParser],
                       tool_common: argparse.ArgumentParser) -> None:
    """Add ``report enroll`` and ``report ingest`` through the CLI's ``cmd`` factory.

    ``tool_common`` is the parent every ``airlock`` command takes its shared
    options from (``-q``, ``-v``, ``--debug``).
    """
    from airlock.console import Parser

    report = cmd("report", "enroll device keys and read the reports devices send home",
                 "airlock report ingest /media/usb/airlock-reports/")
    common = Parser(add_help=False, parents=[tool_common])
    common.add_argument("--fleet", type=Path,
                        default=Path(os.environ.get("AIRLOCK_FLEET", _DEFAULT_FLEET)),
                        help=f"fleet directory (default $AIRLOCK_FLEET or ./{_DEFAULT_FLEET})")
    json_option(common)
    rsub = report.add_subparsers(dest="report_cmd", required=True, parser_class=Parser)
    e = add_command(rsub, "enroll", "record a device's public key (printed at airlock-agent init)",
                    "airlock report enroll cam-7.pub --device-id cam-7 --site north", [common])
    e.add_argument("device_pub", type=Path, metavar="DEVICE_PUB",
                   help="the device's public key (DEVICE.pub, printed by airlock-agent init)")
    e.add_argument("--device-id", required=True, help="the device id it was initialised with")
    e.add_argument("--site", help="where the device is")
    e.add_argument("--force", action="store_true", help="replace the device's enrolled key")
    i = add_command(rsub, "ingest", "verify reports against enrolled keys; print the fleet table",
                    "airlock report ingest /media/usb/airlock-reports/ --textfile fleet.prom",
                    [common])
    i.add_argument("files", type=Path, nargs="+", metavar="FILE",
                   help="report files, or folders of *.report.json")
    i.add_argument("--textfile", type=Path, metavar="FILE.prom",
                   help="also write the fleet figures for node_exporter's textfile collector")
    i.add_argument("--html", type=Path, metavar="FILE.html",
                   help="also write the fleet report: one self-contained HTML file with plots")


def run_report(a: argparse.Namespace) -> dict[str, Any] | None:
    from bundler.hq.ingest import FleetRecords, fleet_textfile

    fleet = FleetRecords(a.fleet)
    if a.report_cmd == "enroll":
        result = fleet.enroll(a.device_pub, a.device_id, a.site, force=a.force)
        emit(result, a.json, lambda d: (f"enrolled {d['device_id']}"
                                        + (f" (site {d['site']})" if d["site"] else "")
                                        + f" with key {d['keyid'][:16]}… in {d['fleet']}"))
        return None
    results = fleet.ingest(list(a.files))
    refused = [r for r in results if r.reason]
    rows = fleet.table()
    if a.textfile is not None:
        fleet_textfile(rows, a.textfile)
    if a.html is not None:
        _write_html(fleet, a.html)
    out = {"accepted": [r.__dict__ for r in results if not r.reason],
           "refused": [{"file": r.file, "reason": r.reason} for r in refused],
           "devices": rows, "fleet": str(a.fleet),
           "html": None if a.html is None else str(a.html.absolute())}
    for r in refused:
        print(f"airlock: refused {r.file}: {r.reason}", file=sys.stderr)
    emit(out, a.json, _table)
    if refused:
        raise RejectedError(f"{len(refused)} of {len(results)} report(s) refused and not "
                            "counted (see above)")
    return None


def _write_html(fleet: FleetRecords, path: Path) -> None:
    """The fleet report, replaced atomically (a browser never shows half of it)."""
    from bundler.build.output import exclusive_partial
    from bundler.hq.fleet_page import fleet_html

    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--html {path}: give a file name ending in .html")
    if path.is_dir():
        raise UsageError(f"--html {path} is a directory; give a file name ending in .html")
    html = fleet_html(fleet).encode()
    with exclusive_partial(path) as (partial, out):  # the bundler's one way beside an output
        out.write(html)
        out.flush()
        os.fsync(out.fileno())
        os.replace(partial, path)


def _table(d: dict[str, Any]) -> str:
    from bundler.hq.ingest import age_text

    head = ("device", "site", "ring", "release", "health", "last check", "rollbacks", "drift",
            "report age")
    lines = [head]
    for r in d["devices"]:
        drift = "-" if r["drift"] is None else f"{r['drift']:.2f}" + (" !" if r["drift_warn"]
                                                                      else "")
        release = f"{r['release']} ({r['version']})" if r["release"] else "-"
        lines.append((r["device"], r["site"] or "-", r["ring"] or "-", release, r["health"],
                      (r["last_check"] or "-")[:19], "-" if r["rollbacks"] is None
                      else str(r["rollbacks"]), drift, age_text(r["report_age_s"])))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in lines]
    accepted = len(d["accepted"])
    text.append(f"{accepted} report(s) taken in, {len(d['refused'])} refused; "
                f"fleet {d['fleet']}")
    if d.get("html"):
        text.append(f"fleet report: {d['html']}")
    return "\n".join(text)
