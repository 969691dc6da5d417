"""``airlock hq``: questions answered from headquarters' ledger (status, history, audit, import).

    airlock hq status --site north --ring canary
    airlock hq history cam-7
    airlock hq audit --since 2026-12-01 --verify
    airlock hq import airlock-fleet/
    airlock hq inventory cam-7 -o cam-7.inventory.json   # for build --delta-from

The ledger is ``--db URL`` (or ``db`` in airlock.toml, ``$AIRLOCK_DB``), else
SQLite in the fleet directory; the work is in ``bundler.hq.ledger*``. ``audit
--verify`` recomputes the hash chain and exits 3 (rejected) naming each entry
that was edited, deleted or cut off; ``fleet`` stays the word for reaching
devices over SSH.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airlock.command import Reported
from airlock.console import Parser, columns, json_option
from airlock.errors import RejectedError, UsageError
from bundler.commands.options import common_parent, ledger_args, ledger_from, subcommands

__all__ = ["DESCRIPTION", "EXAMPLES", "Audit", "History", "Imported", "Status", "add_arguments",
           "run"]

EXAMPLES = ("airlock hq status --site north", "airlock hq audit --verify")
DESCRIPTION = None


@dataclass(frozen=True)
class Status(Reported):
    """One row per device from the ledger (``LedgerReads.status``)."""

    def text(self) -> str:
        from bundler.hq.ingest import age_text

        rows = [("DEVICE", "SITE", "RING", "RELEASE", "HEALTH", "ROLLBACKS", "DRIFT", "AGE")]
        for r in self.data["devices"]:
            drift = "-" if r["drift"] is None else f"{r['drift']:.2f}" + (
                " !" if r["drift_warn"] else "")
            release = f"{r['release']} ({r['version']})" if r["release"] else "-"
            rows.append((r["device"], r["site"] or "-", r["ring"] or "-", release, r["health"],
                         "-" if r["rollbacks"] is None else str(r["rollbacks"]), drift,
                         age_text(r["report_age_s"])))
        d = self.data
        return columns(rows) + (f"\n{len(d['devices'])} device(s), {d['failed']} failing, "
                                f"{d['silent']} never reported; ledger {d['ledger']}")


@dataclass(frozen=True)
class History(Reported):
    """Everything the ledger holds about one device."""

    def text(self) -> str:
        d = self.data
        lines = [f"{d['device']}: site {d['site'] or '-'}, ring {d['ring'] or '-'}, key "
                 f"{d['keyid'][:16]}…, enrolled {d['enrolled']}"]
        for r in d["reports"]:
            health = {True: "ok", False: "FAILED", None: "-"}[r["health_ok"]]
            lines.append(f"  {r['time']}  report   {r['release'] or '-'} "
                         f"({r['version'] or '-'}) health {health}")
        for m in d["rollouts"]:
            signers = ", ".join(k[:12] for k in m["signers"] or []) or "-"
            lines.append(f"  {m['finished']}  rollout  #{m['rollout']} {m['release']} wave "
                         f"{m['wave']}: {m['before'] or '-'} -> {m['after'] or '-'} "
                         f"{m['result']}; signed by {signers}")
        for c in d["carried"]:
            lines.append(f"  {c['time']}  carried  {c['release'] or '-'} on {c['medium']}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Audit(Reported):
    """The audit entries asked for and, with --verify, what the chain check found."""

    def text(self) -> str:
        d = self.data
        rows = [("SEQ", "AT", "WHO", "ACTION", "SUBJECT")] + [
            (str(e["seq"]), e["at"], e["actor"], e["action"], e["subject"])
            for e in d["entries"]]
        out = columns(rows)
        if d["verified"] is not None:
            out += "\n" + ("audit chain intact: " + f"{d['chain_length']} entries"
                           if d["verified"] else "audit chain BROKEN:\n" + "\n".join(
                               f"  entry {p['seq']}: {p['problem']}" for p in d["problems"]))
        return out

    def finish(self) -> int:
        if self.data["verified"] is False:
            raise RejectedError(f"the audit chain of {self.data['ledger']} does not hold: "
                                f"{len(self.data['problems'])} problem(s) (see above)")
        return 0


@dataclass(frozen=True)
class Imported(Reported):
    """A fleet directory moved into the ledger."""

    def text(self) -> str:
        d = self.data
        lines = [f"imported {d['fleet']} into {d['ledger']}: {d['devices']} device(s) enrolled "
                 f"({d['devices_kept']} already there), {d['reports']} report(s), "
                 f"{len(d['refused'])} refused"]
        lines += [f"  refused {r['file']}: {r['reason']}" for r in d["refused"]]
        return "\n".join(lines)

    def finish(self) -> int:
        if self.data["refused"]:
            raise RejectedError(f"{len(self.data['refused'])} stored report(s) no longer verify "
                                "and were not imported (see above)")
        return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    common = Parser(add_help=False, parents=[common_parent()])
    ledger_args(common)
    json_option(common)
    add = subcommands(p, "hq_cmd", parents=[common])
    s = add("status", "every device's newest report, from the ledger",
            "airlock hq status --site north --ring canary")
    s.add_argument("--site", help="only devices enrolled at SITE")
    s.add_argument("--ring", help="only devices whose newest report names RING")
    h = add("history", "one device's reports, rollouts and what was carried to it",
            "airlock hq history cam-7")
    h.add_argument("device", help="the device id")
    a = add("audit", "the ledger's audit log of every write; --verify checks its hash chain",
            "airlock hq audit --since 2026-12-01 --verify")
    a.add_argument("--since", metavar="TIME", help="only entries at or after TIME (ISO date or "
                   "time, UTC unless it names a zone)")
    a.add_argument("--limit", type=int, default=200, metavar="N",
                   help="show at most the newest N entries (default 200; 0 for all)")
    a.add_argument("--verify", action="store_true",
                   help="recompute the whole hash chain; exit 3 naming each broken entry")
    i = add("import", "move a fleet directory (devices.json, reports/) into the ledger",
            "airlock hq import airlock-fleet/ --db postgresql://hq@db.example/airlock")
    i.add_argument("directory", type=Path, metavar="DIR", help="the fleet directory to read")
    v = add("inventory", "write a device's newest signed inventory (for build --delta-from)",
            "airlock hq inventory cam-7 -o cam-7.inventory.json")
    v.add_argument("device", help="the device id")
    v.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                   help="where to write the inventory")


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r} is not an ISO date or time") from None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


def run(a: argparse.Namespace) -> Status | History | Audit | Imported | Reported:
    from bundler.build.host_config import apply_to_args

    apply_to_args(a)
    since = _since(getattr(a, "since", None))  # a typo costs nothing, not even an open
    ledger = ledger_from(a)
    if a.hq_cmd == "status":
        rows = ledger.status(a.site, a.ring)
        return Status({"ledger": ledger.root, "devices": rows,
                       "failed": sum(1 for r in rows if r["health_ok"] is False),
                       "silent": sum(1 for r in rows if r["report_time"] is None)})
    if a.hq_cmd == "history":
        return History(ledger.history(a.device))
    if a.hq_cmd == "audit":
        if a.limit < 0:
            raise UsageError("--limit must be 0 (all) or more")
        entries = ledger.audit(since, a.limit or None)
        problems = [p.to_dict() for p in ledger.verify_audit()] if a.verify else []
        data: dict[str, Any] = {"ledger": ledger.root, "entries": entries,
                                "verified": (not problems) if a.verify else None,
                                "problems": problems,
                                "chain_length": ledger.audit_length() if a.verify else None}
        return Audit(data)
    if a.hq_cmd == "import":
        from bundler.hq.ledger_import import import_fleet_dir

        return Imported(import_fleet_dir(ledger, a.directory))
    return _inventory(ledger, a.device, a.output)


def _inventory(ledger: Any, device: str, output: Path) -> Reported:
    from airlock.files import write_atomic

    data = ledger.inventory(device)
    if data is None:
        raise UsageError(f"the ledger holds no inventory of {device} (no report ingested)")
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, data)
    return _Written({"device": device, "inventory": str(output), "bytes": len(data)})


@dataclass(frozen=True)
class _Written(Reported):
    def text(self) -> str:
        return f"wrote {self.data['device']}'s newest inventory to {self.data['inventory']}"
