"""``airlock fleet``: reach site devices over SSH (push, hosts, rollout).

    airlock fleet push vision-1.3.0.airlock cam-7 --user airlock --identity site.key --known-hosts kh
    airlock fleet hosts --inventory site.yml --ring canary
    airlock fleet rollout vision-1.3.0.airlock --inventory site.yml --known-hosts site/kh \\
        --waves 1,25%,100% --max-failures 0 --parallel 4 --report rollout.json

The work is in ``bundler.fleet.push``, ``bundler.fleet.ansible_inventory``
(the inventory) and ``bundler.fleet.rollout`` (the waves). ``rollout`` and
``push`` then write what they did into headquarters' ledger (``--db``, else
``FLEET/ledger.sqlite``; ``bundler.hq.ledger_records``) unless ``--no-record``;
a ledger that cannot be written is a warning, never a failed rollout. This module only
turns arguments into a plan and results into text. On a terminal each
device's row is printed as it finishes (the live table); the full table and
summary follow at the end, or JSON with ``--json``. Paramiko (about 0.2 s)
is imported by these commands only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock.command import Reported
from airlock.console import columns, inert, json_option, phase_bars, say
from airlock.errors import UsageError
from airlock.files import write_atomic
from bundler.build.output import check_output
from bundler.commands.options import ledger_args, record_in_ledger, subcommands

if TYPE_CHECKING:
    from bundler.fleet.ansible_inventory import Device
    from bundler.fleet.rollout import DeviceResult
    from bundler.hq.ledger import Ledger

__all__ = ["DESCRIPTION", "EXAMPLES", "Hosts", "Pushed", "RolledOut", "add_arguments", "run"]

EXAMPLES = ("airlock fleet push vision-1.3.0.airlock cam-7 --user airlock --identity site.key "
            "--known-hosts site/known_hosts",)
DESCRIPTION = None


@dataclass(frozen=True)
class Pushed:
    """Each host's copy of the bundle (``PushResult.to_dict()``)."""

    bundle: str
    dest: str
    hosts: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        failed = [h for h in self.hosts if not h["ok"]]
        return {"bundle": self.bundle, "dest": self.dest, "hosts": self.hosts,
                "ok": not failed, "exit_code": failed[0]["exit_code"] if failed else 0}

    def text(self) -> str:
        from bundler.fleet.push import push_text

        return push_text(self.to_dict())

    def finish(self) -> int:
        # The table went to stdout; each failed host is one line on stderr.
        for h in self.hosts:
            if not h["ok"]:
                say("airlock", "error", f"{h['target']}: {h['error']}")
        return int(self.to_dict()["exit_code"])


@dataclass(frozen=True)
class Hosts:
    """The devices of a site inventory a rollout would touch."""

    inventory: str
    hosts: list[dict[str, Any]]
    reader: str = "builtin"  # or "ansible-inventory"

    def to_dict(self) -> dict[str, Any]:
        return {"inventory": self.inventory, "hosts": self.hosts, "reader": self.reader}

    def text(self) -> str:
        rows = [("HOST", "ADDRESS", "USER", "RING", "ROOT", "GROUPS")] + [
            (h["name"], h["address"], h["user"], h["ring"] or "-", h["root"],
             ",".join(h["groups"]) or "-") for h in self.hosts]
        return columns(rows) + f"\n{len(self.hosts)} host(s), read by {self.reader}"


@dataclass(frozen=True)
class RolledOut(Reported):
    """A rollout's report (``RolloutReport.to_dict()``), also what ``--report`` writes."""

    def text(self) -> str:
        d = self.data
        rows = [("DEVICE", "RING", "BEFORE -> AFTER", "STATE", "TIME", "REASON")] + [
            (r["device"], r["ring"] or "-", f"{r['before'] or '-'} -> {r['after'] or '-'}",
             r["result"], f"{r['seconds']:.1f}s", r["reason"] or "") for r in d["devices"]]
        failed = sum(1 for r in d["devices"] if not r["ok"])
        what = "dry run of" if d["dry_run"] else "rollout of"
        tail = (f"{what} {d['release']}: {len(d['devices'])} device(s) in "
                f"{len(d['waves'])} wave(s), {failed} failed, {d['seconds']:.1f} s")
        if d["halted"]:
            tail += (f"; HALTED after wave {d['halted_after_wave']}, put back: "
                     f"{', '.join(d['reverted']) or 'none'}")
        return columns(rows) + "\n" + tail

    def finish(self) -> int:
        for r in self.data["devices"]:
            if not r["ok"]:
                say("airlock", "error", f"{r['device']}: {r['reason']}")
        if self.data["halted"]:
            say("airlock", "error", f"rollout halted after wave "
                f"{self.data['halted_after_wave']}: too many failures")
        return int(self.data["exit_code"])


def add_arguments(p: argparse.ArgumentParser) -> None:
    add = subcommands(p, "fleet_cmd")
    fp = add("push",
             "copy a bundle (or its parts) to devices over SFTP; a broken copy resumes, checked",
             "airlock fleet push vision-1.3.0.airlock cam-7 10.0.4.8:2222 --user airlock "
             "--identity site.key --known-hosts site/known_hosts --dest /var/lib/airlock/incoming")
    fp.add_argument("bundle", type=Path, help="bundle, or its parts (BUNDLE.part001, "
                    "BUNDLE.parts.json or their directory)")
    fp.add_argument("hosts", nargs="+", metavar="HOST[:PORT]",
                    help="the devices to copy to (port 22 unless given)")
    fp.add_argument("--user", required=True, help="SSH login name on the devices")
    fp.add_argument("--identity", type=Path, required=True, help="SSH private key")
    _host_key_args(fp)
    fp.add_argument("--dest", default=".", help="directory on the devices (default: the "
                    "login's home)")
    _record_args(fp)
    json_option(fp)
    h = add("hosts", "list the devices of a site inventory a rollout would touch",
            "airlock fleet hosts --inventory site.yml --ring canary --limit 'cams:!cam-9'")
    _select_args(h)
    json_option(h)
    _rollout_args(add(
        "rollout",
        "install a bundle on a site's devices in waves over SSH; halt and put back on failure",
        "airlock fleet rollout vision-1.3.0.airlock --inventory site.yml --known-hosts "
        "site/known_hosts --waves 1,25%,100% --parallel 4 --report rollout.json"))


def _host_key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--known-hosts", type=Path, required=True,
                   help="OpenSSH known_hosts file the device keys are checked against")
    p.add_argument("--accept-new-hosts", action="store_true",
                   help="record the key of a host not yet in known_hosts (a changed key is "
                        "always refused)")


def _select_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inventory", "-i", type=Path, required=True,
                   help="Ansible inventory of the site (YAML or INI)")
    p.add_argument("--inventory-reader", choices=("auto", "ansible", "builtin"), default="auto",
                   help="who reads it: ansible-inventory when installed (auto, the default), "
                   "or the built-in reader")
    p.add_argument("--ring", help="only devices whose airlock_ring is RING")
    p.add_argument("--limit", metavar="PATTERN",
                   help="Ansible host pattern: names, groups, globs; '!x' excludes")


def _rollout_args(r: argparse.ArgumentParser) -> None:
    r.add_argument("bundle", type=Path, help="bundle, or its parts (BUNDLE.part001, "
                   "BUNDLE.parts.json or their directory)")
    _select_args(r)
    _host_key_args(r)
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
    r.add_argument("--via", metavar="RELAY_URL",
                   help="devices pull the bundle from this site relay (airlock serve, or "
                        "airlock-agent serve --registry) instead of a push to each, e.g. "
                        "http://relay:9401")
    r.add_argument("--dry-run", action="store_true",
                   help="connect and check every device; change nothing")
    r.add_argument("--report", type=Path, metavar="FILE", help="also write the JSON report here")
    _record_args(r)
    json_option(r)


def _record_args(p: argparse.ArgumentParser) -> None:
    ledger_args(p)
    p.add_argument("--no-record", action="store_true",
                   help="do not write this into headquarters' ledger")


def _record(a: argparse.Namespace, what: str, write: Callable[[Ledger], object]) -> None:
    if not a.no_record:
        record_in_ledger(a, what, write)


def run(a: argparse.Namespace) -> Pushed | Hosts | RolledOut:
    if a.fleet_cmd == "hosts":
        from bundler.fleet.ansible_inventory import load_site

        site = load_site(a.inventory, a.inventory_reader)
        return Hosts(str(a.inventory), [d.to_dict() for d in site.select(a.ring, a.limit)],
                     site.reader)
    if a.fleet_cmd == "rollout":
        return _rollout(a)
    from bundler.fleet.push import files_of, push_all
    from bundler.fleet.ssh import Login, Target

    targets = [Target.parse(h) for h in a.hosts]
    login = Login(a.user, a.identity, a.known_hosts, accept_new=a.accept_new_hosts)
    total = sum(p.stat().st_size for p in files_of(a.bundle))
    with phase_bars() as bars:
        results = push_all(a.bundle, targets, login, a.dest,
                           progress=lambda host, n: bars(f"push {host}", n, total))
    copied = [t.host for t, r in zip(targets, results, strict=True) if r.ok]
    if copied:
        from bundler.hq.ledger_records import record_carried

        _record(a, "push", lambda ledger: record_carried(ledger, a.bundle, f"sftp:{a.dest}",
                                                         copied))
    return Pushed(str(a.bundle), a.dest, [r.to_dict() for r in results])


def _devices(a: argparse.Namespace) -> list[Device]:
    from bundler.fleet.ansible_inventory import load_site

    return load_site(a.inventory, a.inventory_reader).select(ring=a.ring, limit=a.limit)


def _is_report(path: Path) -> bool:
    """Whether ``path`` holds a rollout report (JSON naming its waves and devices)."""
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:
        return False
    return isinstance(doc, dict) and "waves" in doc and "devices" in doc


def _row(r: DeviceResult) -> tuple[str, ...]:
    return (r.device, r.ring or "-", f"{r.before or '-'} -> {r.after or '-'}", r.result,
            f"{r.seconds:.1f}s", r.reason or "")


def _relay_url(via: str | None) -> str | None:
    if via is not None and not via.startswith(("http://", "https://")):
        raise UsageError(f"--via {via!r} must be the relay's URL, e.g. http://relay:9401")
    return via


def _rollout(a: argparse.Namespace) -> RolledOut:
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
                command_timeout=a.command_timeout, hold=a.confirm_after, via=_relay_url(a.via))
    live = not a.json and sys.stderr.isatty()

    def wave(n: int, devices: list[Device]) -> None:
        if live:
            print(f"wave {n}: {', '.join(d.name for d in devices)}", file=sys.stderr)

    def row(r: DeviceResult) -> None:
        if live:
            print("  " + inert("  ".join(_row(r))), file=sys.stderr)

    report = roll_out(plan, on_device=row, on_wave=wave).to_dict()
    from bundler.hq.ledger_records import record_rollout

    _record(a, "rollout", lambda ledger: record_rollout(ledger, report, a.bundle))
    if a.report:
        a.report.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(a.report, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    return RolledOut(report)
