"""``airlock-agent``: the device-side command line.

    airlock-agent --root /var/lib/airlock init --trust root.json --device-id cam-7 --ring canary
    airlock-agent install /media/usb/vision-1.3.0.airlock
    airlock-agent status --json
    airlock-agent history --verify
    airlock-agent rollback
    airlock-agent check --rollback-on-failure
    airlock-agent gc --keep 2
    airlock-agent fsck --repair
    airlock-agent --version --json

An agent installed from a kit (install.sh) updates itself when a release
carries a newer kit for its platform: see docs/BOOTSTRAP.md.

ROOT is --root, else $AIRLOCK_ROOT, else /var/lib/airlock. Every command that
changes ROOT takes its lock (a second one exits 5) and first repairs whatever
an earlier crash left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from agent.durable import fsync_dir, write_atomic, write_json
from agent.journal import Journal
from agent.layout import AgentConfig, Layout, root_from_env
from agent.lock import AgentLock
from agent.rootformat import check_format, write_format
from airlock.console import (
    Parser,
    add_command,
    emit,
    human_size,
    open_bundle,
    phase_bars,
    progress,
    read_input,
    run,
)
from airlock.errors import LockedError, RejectedError, UsageError
from keys.keyfile import generate_keypair
from keys.trust import TrustRoot

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("--root", type=Path, default=argparse.SUPPRESS,
                        help="agent root (default $AIRLOCK_ROOT or /var/lib/airlock)")
    p = Parser(prog="airlock-agent", description=__doc__, parents=[common],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="store_true",
                   help="print this agent's version, platform and Python (--json: as JSON)")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)

    def cmd(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return add_command(sub, name, help, example, [common])

    i = cmd("init", "lay out ROOT, store the trust root, create the device key",
            "airlock-agent --root /var/lib/airlock init --trust root.json --device-id cam-7 "
            "--ring canary")
    i.add_argument("--trust", type=Path, required=True, help="trust root (root.json)")
    i.add_argument("--device-id", help="device name (default: the host name)")
    i.add_argument("--ring", help="deployment ring this device belongs to")
    i.add_argument("--sink", default="oci-dir", help="image sink type (default oci-dir)")
    i.add_argument("--sink-option", action="append", default=[], metavar="KEY=VALUE",
                   help="image sink setting (repeatable)")
    i.add_argument("--json", action="store_true")

    n = cmd("install", "verify, store, health-check and switch to a bundle ('-' reads stdin)",
            "airlock-agent install /media/usb/vision-1.3.0.airlock --json")
    n.add_argument("bundle", help="bundle file, or - for standard input")
    n.add_argument("--no-switch", action="store_true",
                   help="install and health-check, but keep the active release")
    n.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for another agent command to finish")
    n.add_argument("--json", action="store_true")

    s = cmd("status", "show the active and previous release, agent state and disk use",
            "airlock-agent status --json")
    s.add_argument("--json", action="store_true")

    h = cmd("history", "show the journal of every action", "airlock-agent history --verify")
    h.add_argument("--verify", action="store_true", help="check the journal's hash chain")
    h.add_argument("--last", type=int, default=0, metavar="N", help="only the last N entries")
    h.add_argument("--json", action="store_true")

    r = cmd("rollback", "switch back to the previous release (health-checked first)",
            "airlock-agent rollback --json")
    r.add_argument("--json", action="store_true")

    c = cmd("check", "re-run the health check of the active release",
            "airlock-agent check --rollback-on-failure")
    c.add_argument("--rollback-on-failure", action="store_true",
                   help="roll back when the check fails")
    c.add_argument("--json", action="store_true")

    g = cmd("gc", "remove old releases and unused blobs (never current or previous)",
            "airlock-agent gc --keep 2")
    g.add_argument("--keep", type=int, default=2, metavar="N",
                   help="installed releases to keep besides current and previous (default 2)")
    g.add_argument("--json", action="store_true")

    f = cmd("fsck", "check the store, releases, links and journal; --repair fixes what it can",
            "airlock-agent fsck --repair --json")
    f.add_argument("--repair", action="store_true",
                   help="undo unfinished work, remove corrupt blobs and broken releases")
    f.add_argument("--read-only", action="store_true",
                   help="check without taking the lock and never repair (a new agent's "
                        "self-check while the running one holds the lock)")
    f.add_argument("--json", action="store_true")

    k = cmd("self-install", "finish installing this agent from a kit (run by the kit's "
            "install.sh)", "sh install.sh --trust root.json   # runs: airlock-agent "
            "self-install --kit DIR --prefix /opt/airlock")
    k.add_argument("--kit", type=Path, required=True, help="the unpacked kit directory")
    k.add_argument("--prefix", type=Path, default=Path("/opt/airlock"),
                   help="where agents live (default /opt/airlock)")
    k.add_argument("--trust", type=Path, help="trust root, for a ROOT not initialised yet")
    k.add_argument("--bin-dir", type=Path, default=Path("/usr/local/bin"),
                   help="where to link airlock-agent (default /usr/local/bin)")
    k.add_argument("--systemd-dir", type=Path, default=Path("/etc/systemd/system"))
    k.add_argument("--device-id", help="device name for init (default: the host name)")
    k.add_argument("--ring", help="deployment ring for init")
    k.add_argument("--no-init", action="store_true", help="do not run init on a new ROOT")
    k.add_argument("--json", action="store_true")
    return p


def _sink_config(kind: str, options: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {"type": kind}
    for opt in options:
        key, eq, value = opt.partition("=")
        if not eq or not key:
            raise UsageError(f"--sink-option {opt!r} must be KEY=VALUE")
        config[key] = value
    return config


def _init(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    if layout.is_initialised():
        raise UsageError(f"{layout.root} is already initialised; use another --root")
    trust = TrustRoot.from_bytes(read_input(a.trust, "trust root"))
    for d in layout.directories():
        d.mkdir(parents=True, exist_ok=True)
    with AgentLock(layout.lock):
        write_atomic(layout.trust_root, trust.to_bytes())
        write_json(layout.sequences, {})
        for p in (layout.device_key, layout.device_pub):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        generate_keypair("device", layout.root)
        fsync_dir(layout.root)
        config = AgentConfig(a.device_id or socket.gethostname(), a.ring,
                             _sink_config(a.sink, a.sink_option))
        write_format(layout)
        Journal(layout.journal).append("initialised", device_id=config.device_id,
                                       ring=config.ring, trust_version=trust.version)
        import yaml

        # Written last: its presence is what "initialised" means.
        write_atomic(layout.config, yaml.safe_dump(config.to_dict(), sort_keys=True).encode())
    return {"root": str(layout.root), "device_id": config.device_id, "ring": config.ring,
            "trust_version": trust.version, "device_key": str(layout.device_pub),
            "sink": config.sink}


def _say_recovered(actions: list[str]) -> None:
    for line in actions:
        print(f"airlock-agent: recovered: {line}", file=sys.stderr)


def _mutating(layout: Layout, wait: float, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    from agent.recovery import recover

    layout.require_initialised()
    with AgentLock(layout.lock, wait=wait):
        _say_recovered(recover(layout))
        _migrate(layout)
        result = work()
    return result


def _migrate(layout: Layout) -> None:
    from agent.rootformat import migrate
    from agent.selfupdate import may_migrate

    if may_migrate():
        for line in migrate(layout, Journal(layout.journal)):
            print(f"airlock-agent: {line}", file=sys.stderr)


def _install(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.install import install

    def work() -> dict[str, Any]:
        stream, size = open_bundle(a.bundle)
        with stream, progress(size, "installing") as tick:
            result = install(layout, stream, label=a.bundle, switch=not a.no_switch,
                             progress=tick)
        if result["active"] == result["release"]:
            # The release is committed; now the agent it carries, if any (exit 4 on failure).
            from agent.selfupdate import update_from_release

            with phase_bars() as bars:
                result["agent"] = update_from_release(layout, result["release"], progress=bars)
        return result

    return _mutating(layout, a.wait, work)


def _status(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.recovery import needs_recovery, recover
    from agent.status import status

    layout.require_initialised()
    # Repair first when a crash left work behind and no one else is working; a plain
    # status never takes the lock, so polling it cannot make an install exit 5.
    if needs_recovery(layout):
        with contextlib.suppress(LockedError, PermissionError), AgentLock(layout.lock):
            _say_recovered(recover(layout))
    return status(layout)


def _history(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    layout.require_initialised()
    journal = Journal(layout.journal)
    verified = journal.verify() if a.verify else None
    entries = list(journal.entries())
    if a.last:
        entries = entries[-a.last :]
    return {"entries": entries, "verified": verified is not None, "lines": verified}


def _rollback(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.rollback import rollback

    return _mutating(layout, 0.0, lambda: rollback(layout))


def _check(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.rollback import check

    return _mutating(layout, 0.0, lambda: check(layout,
                                                rollback_on_failure=a.rollback_on_failure))


def _gc(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.gc import gc

    return _mutating(layout, 0.0, lambda: gc(layout, keep=a.keep))


def _fsck(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.fsck import fsck

    layout.require_initialised()
    if a.read_only and a.repair:
        raise UsageError("--read-only and --repair exclude each other")
    with contextlib.nullcontext() if a.read_only else AgentLock(layout.lock):
        result = fsck(layout, repair=a.repair)
    if not result["ok"]:
        # The report goes to stdout, the verdict to stderr with exit 3.
        emit(result, a.json, _human("fsck"))
        first = result["problems"][0]
        hint = "" if a.repair else "; run 'airlock-agent fsck --repair'"
        n = len(result["problems"])
        raise RejectedError(f"{n} inconsistenc{'y remains' if n == 1 else 'ies remain'} "
                            f"(first: {first['path']}: {first['detail']}){hint}")
    return result


def _agent_line(agent: dict[str, Any] | None) -> str:
    if not agent:
        return ""
    if agent.get("updated"):
        return f"\nagent updated to {agent['version']} (was {agent['previous_version']})"
    return f"\nagent not updated: {agent['reason']}"


def _release_line(label: str, r: dict[str, Any] | None) -> str:
    if r is None:
        return f"{label:<9} none"
    if "error" in r:
        return f"{label:<9} {r['id']}: {r['error']}"
    h = r.get("health")
    health = "not checked" if h is None else "ok" if h.get("ok") else f"FAILED ({h.get('reason')})"
    return (f"{label:<9} {r['name']} {r['version']} (sequence {r['sequence']})  "
            f"installed {r.get('installed_at') or '?'}  health: {health}")


def _human(cmd: str) -> Callable[[dict[str, Any]], str]:
    def fmt(d: dict[str, Any]) -> str:
        if cmd == "init":
            return (f"initialised {d['root']} for device {d['device_id']}"
                    + (f" in ring {d['ring']}" if d["ring"] else "")
                    + f" (trust root version {d['trust_version']})")
        if cmd == "install":
            agent = _agent_line(d.get("agent"))
            if not d["installed"]:
                return str(d["message"]) + agent
            where = "active" if d["switched"] else "installed, not switched to"
            return (f"installed {d['name']} {d['version']} (sequence {d['sequence']}), {where}; "
                    f"{d['blobs_stored']} blob(s) stored, {d['blobs_skipped']} already present, "
                    f"health ok in {d['health_s']:.1f} s; total {d['seconds']:.1f} s" + agent)
        if cmd == "version":
            where = (f"kit {d['kit']} in {d['home']}" if d["kit"] else "installed with pip")
            return (f"airlock-agent {d['version']} ({d['platform']}, Python "
                    f"{d['python_full']}; {where})")
        if cmd == "self-install":
            done = (f"agent {d['version']} is active in {d['prefix']}" if d["updated"] else
                    f"agent {d['version']} was already active in {d['prefix']}; checked")
            said = [done, f"airlock-agent linked at {d['linked']}"]
            if d["initialised"]:
                said.append(f"initialised {d['root']}")
            if d["unit"]:
                said.append(f"systemd unit {d['unit']} "
                            f"(systemctl enable --now {Path(d['unit']).name})")
            return "\n".join([*said, *(f"recovered: {r}" for r in d["recovered"])])
        if cmd == "status":
            last = d["last_notable_event"]
            lines = [f"device    {d['device_id']}" + (f" (ring {d['ring']})" if d["ring"] else ""),
                     f"agent     {d['agent']['version']} ({d['agent']['platform']}, Python "
                     f"{d['agent']['python']}, "
                     + (f"kit {d['agent']['kit']})" if d["agent"]["kit"] else "pip)"),
                     _release_line("active", d["active"]),
                     _release_line("previous", d["previous"]),
                     f"state     {d['state']}"
                     + (f" (pid {d['lock_holder']})" if d["lock_holder"] else ""),
                     f"store     {d['store']['blobs']} blobs, {human_size(d['store']['bytes'])}; "
                     f"{len(d['releases'])} release(s); disk {human_size(d['disk']['free'])} free"]
            if last:
                what = " ".join(str(x) for x in (last["event"], last.get("release")) if x)
                lines.append(f"last      {last['time']} {what}: {last.get('reason') or ''}")
            return "\n".join(lines)
        if cmd == "history":
            out = []
            for e in d["entries"]:
                extra = {k: v for k, v in e.items()
                         if k not in ("time", "event", "prev", "report") and v is not None}
                out.append(f"{e.get('time', '?')}  {e.get('event', '?'):<16} "
                           + " ".join(f"{k}={v}" for k, v in sorted(extra.items())))
            if d["verified"]:
                out.append(f"journal hash chain verified: {d['lines']} lines")
            return "\n".join(out)
        if cmd == "rollback":
            return (f"rolled back from {d['from']} to {d['name']} {d['version']} "
                    f"(sequence {d['sequence']})")
        if cmd == "check":
            return f"{d['release']}: health check ok"
        if cmd == "fsck":
            c = d["checked"]
            out = [f"repaired: {line}" for line in d["repaired"]]
            out += [f"{p['kind']}: {p['path']}: {p['detail']}" for p in d["problems"]]
            out.append(f"{'consistent' if d['ok'] else 'INCONSISTENT'}: {c['blobs']} blob(s), "
                       f"{c['releases']} release(s), {c['journal_lines']} journal line(s) checked")
            return "\n".join(out)
        if cmd == "gc":
            return (f"removed {len(d['releases_removed'])} release(s) and {d['blobs_removed']} "
                    f"blob(s), freed {human_size(d['bytes_freed'])}")
        return "\n".join(f"{k}: {v}" for k, v in d.items())

    return fmt


def _version_only(argv: list[str]) -> bool:
    """``airlock-agent --version [--json]``, without a command."""
    pre = Parser(add_help=False)
    for flag in ("--version", "--json", "--debug"):
        pre.add_argument(flag, action="store_true")
    pre.add_argument("--root")
    known, rest = pre.parse_known_args(argv)
    return bool(known.version) and not rest


def _self_install(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.selfupdate import self_install

    return self_install(a.kit.absolute(), a.prefix.absolute(), layout,
                        trust_file=a.trust.absolute() if a.trust else None,
                        bin_dir=a.bin_dir.absolute(), systemd_dir=a.systemd_dir,
                        device_id=a.device_id, ring=a.ring, init=not a.no_init)


def _main(argv: list[str]) -> int:
    if _version_only(argv):
        from agent.identity import identity

        emit(identity(), "--json" in argv, _human("version"))
        return 0
    a = _parser().parse_args(argv)
    layout = Layout(root_from_env(getattr(a, "root", None)))
    if a.cmd != "init" and layout.is_initialised():
        check_format(layout)  # an agent older than ROOT's format refuses it, in one line
    handlers: dict[str, Callable[[Layout, argparse.Namespace], dict[str, Any]]] = {
        "init": _init, "install": _install, "status": _status, "history": _history,
        "rollback": _rollback, "check": _check, "gc": _gc, "fsck": _fsck,
        "self-install": _self_install,
    }
    result = handlers[a.cmd](layout, a)
    emit(result, a.json, _human(a.cmd))
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    run(_main, argv, prog="airlock-agent")
