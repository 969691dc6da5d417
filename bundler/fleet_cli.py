"""The ``airlock fleet hosts`` and ``airlock fleet rollout`` command lines (parsing and printing).

::

    airlock fleet hosts --inventory site.yml --ring canary
    airlock fleet rollout vision-1.3.0.airlock --inventory site.yml --known-hosts site/kh \\
        --waves 1,25%,100% --max-failures 0 --parallel 4 --report rollout.json

The work is in ``bundler.fleet.ansible_inventory`` (the inventory) and ``bundler.fleet.rollout`` (the
waves); this module only turns arguments into a plan and results into text.
On a terminal each device's row is printed as it finishes (the live table);
the full table and summary follow at the end, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock.console import inert, json_option
from airlock.errors import UsageError
from bundler.build.output import check_output, exclusive_partial

if TYPE_CHECKING:
    from bundler.fleet.ansible_inventory import Device
    from bundler.fleet.rollout import DeviceResult

__all__ = ["add_fleet_commands", "hosts_text", "rollout_text", "run_hosts", "run_rollout"]


def add_fleet_commands(fsub: Any, common: argparse.ArgumentParser, add_command: Any) -> None:
    """``fleet hosts`` and ``fleet rollout`` beside ``fleet push``."""
    h = add_command(fsub, "hosts", "list the devices of a site inventory a rollout would touch",
                    "airlock fleet hosts --inventory site.yml --ring canary --limit 'cams:!cam-9'",
                    [common])
    _select_args(h)
    json_option(h)

    r = add_command(
        fsub, "rollout",
        "install a bundle on a site's devices in waves over SSH; halt and put back on failure",
        "airlock fleet rollout vision-1.3.0.airlock --inventory site.yml --known-hosts "
        "site/known_hosts --waves 1,25%,100% --parallel 4 --report rollout.json", [common])
    r.add_argument("bundle", type=Path, help="bundle, or its parts (BUNDLE.part001, "
                   "BUNDLE.parts.json or their directory)")
    _select_args(r)
    r.add_argument("--known-hosts", type=Path, required=True,
                   help="OpenSSH known_hosts file the device keys are checked against")
    r.add_argument("--accept-new-hosts", action="store_true",
                   help="record the key of a host not yet in known_hosts (a changed key is "
                        "always refused)")
    r.add_argument("--waves", default="1,25%,100%", metavar="SIZES",
                   help="cumulative wave sizes, counts or percentages (default 1,25%%,100%%)")
    r.add_argument("--max-failures", default="0", metavar="N|P%",
                   help="failures tolerated before the rollout halts (default 0)")
    r.add_argument("--parallel", type=int, default=1, metavar="K",
                   help="devices moved at once within a wave (default 1)")
    r.add_argument("--no-revert-on-halt", action="store_true",
                   help="when halted, leave moved devices on the new release")
    r.add_argument("--confirm-after", type=float, metavar="SECONDS",
                   help="install held: a device not confirmed within SECONDS reverts by itself")
    r.add_argument("--connect-timeout", type=float, default=15.0, metavar="SECONDS",
                   help="give up on a device that does not answer SSH within this (default 15)")
    r.add_argument("--command-timeout", type=float, default=900.0, metavar="SECONDS",
                   help="longest silence from the agent on a device (default 900)")
    r.add_argument("--dry-run", action="store_true",
                   help="connect and check every device; change nothing")
    r.add_argument("--report", type=Path, metavar="FILE", help="also write the JSON report here")
    json_option(r)


def _select_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inventory", "-i", type=Path, required=True,
                   help="Ansible YAML inventory of the site")
    p.add_argument("--ring", help="only devices whose airlock_ring is RING")
    p.add_argument("--limit", metavar="PATTERN",
                   help="Ansible host pattern: names, groups, globs; '!x' excludes")


def _devices(a: argparse.Namespace) -> list[Device]:
    # Imported here, as 'fleet push' imports bundler.fleet.push: paramiko (about 0.2 s) is paid
    # by the fleet commands only, not by every 'airlock' start that builds the parser.
    from bundler.fleet.ansible_inventory import load_site

    return load_site(a.inventory).select(ring=a.ring, limit=a.limit)


def run_hosts(a: argparse.Namespace) -> dict[str, Any]:
    return {"inventory": str(a.inventory), "hosts": [d.to_dict() for d in _devices(a)]}


def hosts_text(d: dict[str, Any]) -> str:
    rows = [("HOST", "ADDRESS", "USER", "RING", "ROOT", "GROUPS")] + [
        (h["name"], h["address"], h["user"], h["ring"] or "-", h["root"],
         ",".join(h["groups"]) or "-") for h in d["hosts"]]
    return _table(rows) + f"\n{len(d['hosts'])} host(s)"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _row(r: DeviceResult) -> tuple[str, ...]:
    return (r.device, r.ring or "-", f"{r.before or '-'} -> {r.after or '-'}", r.result,
            f"{r.seconds:.1f}s", r.reason or "")


def _is_report(path: Path) -> bool:
    """Whether ``path`` holds a rollout report (JSON naming its waves and devices)."""
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:
        return False
    return isinstance(doc, dict) and "waves" in doc and "devices" in doc


def _write_report(path: Path, report: dict[str, Any]) -> None:
    """``--report FILE``, replaced whole through the bundler's one way of writing an output."""
    with exclusive_partial(path) as (partial, out):
        out.write((json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
        out.flush()
        os.fsync(out.fileno())
        os.replace(partial, path)


def run_rollout(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.fleet.rollout import Plan, parse_budget, parse_waves, roll_out

    if a.parallel < 1:
        raise UsageError("--parallel must be 1 or more")
    if a.report:
        # Checked before any device moves: a typo must not cost the inventory or the bundle.
        check_output(a.report, [a.bundle, a.inventory, a.known_hosts], force=False,
                     kind="a rollout report", is_ours=_is_report)
    plan = Plan(a.bundle, _devices(a), a.known_hosts, waves=parse_waves(a.waves),
                max_failures=parse_budget(a.max_failures), parallel=a.parallel,
                accept_new_hosts=a.accept_new_hosts, revert_on_halt=not a.no_revert_on_halt,
                dry_run=a.dry_run, connect_timeout=a.connect_timeout,
                command_timeout=a.command_timeout, hold=a.confirm_after)
    live = not a.json and sys.stderr.isatty()

    def wave(n: int, devices: list[Device]) -> None:
        if live:
            print(f"wave {n}: {', '.join(d.name for d in devices)}", file=sys.stderr)

    def row(r: DeviceResult) -> None:
        if live:
            print("  " + inert("  ".join(_row(r))), file=sys.stderr)

    report = roll_out(plan, on_device=row, on_wave=wave).to_dict()
    if a.report:
        _write_report(a.report, report)
    return report


def rollout_text(d: dict[str, Any]) -> str:
    rows: list[tuple[str, ...]] = [("DEVICE", "RING", "BEFORE -> AFTER", "STATE", "TIME", "REASON")]
    for r in d["devices"]:
        rows.append((r["device"], r["ring"] or "-", f"{r['before'] or '-'} -> {r['after'] or '-'}",
                     r["result"], f"{r['seconds']:.1f}s", r["reason"] or ""))
    failed = sum(1 for r in d["devices"] if not r["ok"])
    what = "dry run of" if d["dry_run"] else "rollout of"
    tail = f"{what} {d['release']}: {len(d['devices'])} device(s) in {len(d['waves'])} wave(s), " \
           f"{failed} failed, {d['seconds']:.1f} s"
    if d["halted"]:
        tail += (f"; HALTED after wave {d['halted_after_wave']}, put back: "
                 f"{', '.join(d['reverted']) or 'none'}")
    return _table(rows) + "\n" + tail
