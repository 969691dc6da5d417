"""``airlock-agent``: the device-side command line.

    airlock-agent --root /var/lib/airlock init --trust root.json --device-id cam-7 --ring canary
    airlock-agent install /media/usb/vision-1.3.0.airlock
    airlock-agent status --json
    airlock-agent history --verify
    airlock-agent rollback
    airlock-agent check --rollback-on-failure
    airlock-agent config --providers OpenVINOExecutionProvider,CPUExecutionProvider
    airlock-agent gc --keep 2
    airlock-agent fsck --repair
    airlock-agent serve --listen 127.0.0.1:9400 --watch /media/usb --check-every 15m
    airlock-agent report -o /media/usb/airlock-reports/cam-7.report.json
    airlock-agent inventory -o /media/usb/cam-7.inventory.json
    airlock-agent --version --json

An agent installed from a kit (install.sh) updates itself when a release
carries a newer kit for its platform: see docs/BOOTSTRAP.md.

ROOT is --root, else $AIRLOCK_ROOT, else /var/lib/airlock. Every command that
changes ROOT takes its lock (a second one exits 5) and first repairs whatever
an earlier crash left behind. On a damaged ROOT (a file where a directory
belongs, a directory where a link belongs) those commands change nothing and
exit 5; status lists the damage and fsck --repair fixes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from agent.journal import Journal
from agent.layout import AgentConfig, Layout, root_from_env
from agent.lock import AgentLock
from agent.rootformat import check_format, write_format
from agent.sinks import SINK_TYPES
from airlock.console import (
    Parser,
    add_command,
    apply_output_options,
    emit,
    fail_with,
    human_size,
    json_option,
    phase_bars,
    progress,
    read_input,
    run,
    say,
    tool_parser,
)
from airlock.errors import LockedError, PreconditionError, RejectedError, UsageError
from airlock.files import fsync_dir, write_atomic, write_json

__all__ = ["main", "parser"]


_DESCRIPTION = """\
airlock-agent: the device's side of Airlock. It verifies a bundle's signatures
and every blob, installs it beside the running release, health-checks the
models with ONNX Runtime, switches atomically and rolls back by itself when a
check fails. State lives under ROOT: --root, else $AIRLOCK_ROOT, else
/var/lib/airlock. Commands that change ROOT take its lock (a second one exits 5)
and first repair what a crash left behind.
"""

_TOUR = (
    "airlock-agent --root /var/lib/airlock init --trust root.json --device-id cam-7 --ring canary",
    "airlock-agent install /media/usb/vision-1.3.0.airlock",
    "airlock-agent status",
    "airlock-agent history --verify",
    "airlock-agent rollback",
    "airlock-agent config --ring prod",
)



def _sink_args(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--sink", default=default, choices=SINK_TYPES, metavar="TYPE",
                   help=f"where container images go: {', '.join(SINK_TYPES)} "
                   "(settings in docs/REGISTRIES.md)")
    p.add_argument("--sink-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an image sink setting, e.g. registry=10.0.0.5:5000 (repeatable; "
                   "KEY= removes one)")


def _root_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=argparse.SUPPRESS, metavar="ROOT",
                   help="agent root (default: $AIRLOCK_ROOT or /var/lib/airlock)")


def _parser() -> argparse.ArgumentParser:
    p, common = tool_parser("airlock-agent", _DESCRIPTION, _TOUR, _root_arg)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)

    def cmd(name: str, help: str, example: str | tuple[str, ...],
            description: str | None = None) -> argparse.ArgumentParser:
        return add_command(sub, name, help, example, [common], description)

    i = cmd("init", "lay out ROOT, store the trust root, create the device key",
            "airlock-agent --root /var/lib/airlock init --trust root.json --device-id cam-7 "
            "--ring canary",
            "Lay out ROOT, store the trust root, create the device key. The image sink and\n"
            "its settings are checked here: a bad one is exit 2 now, not at the first install.")
    i.add_argument("--trust", type=Path, required=True, metavar="ROOT.json",
                   help="the trust root this device will trust (from 'airlock keys init')")
    i.add_argument("--device-id", metavar="NAME", help="device name (default: the host name)")
    i.add_argument("--ring", metavar="RING",
                   help="deployment ring this device belongs to (default: none; then only "
                   "releases for every ring install)")
    _sink_args(i, "oci-dir")
    json_option(i)

    k = cmd("config", "show or change the device's ring, image sink, trust root and how its "
            "application runs models",
            ("airlock-agent config --ring prod",
             "airlock-agent config --sink registry --sink-option registry=10.0.0.5:5000",
             "airlock-agent config --trust-root root-v2.json",
             "airlock-agent config --providers OpenVINOExecutionProvider,CPUExecutionProvider "
             "--no-provider-fallback --intra-op-threads 2"),
            "Show the device's settings, or change them: its ring, its image sink (checked\n"
            "as at init), its trust root, and the ONNX Runtime setup its application uses\n"
            "(execution providers, fallback policy, session options), which every health\n"
            "check and evaluation then uses instead of each release's. A trust root only\n"
            "moves forward: the new one must be the next version, signed by the current\n"
            "root keys and the new ones (as 'airlock keys rotate' makes it). Changes are\n"
            "journaled.")
    ring = k.add_mutually_exclusive_group()
    ring.add_argument("--ring", metavar="RING", help="move the device to this ring")
    ring.add_argument("--no-ring", action="store_true",
                      help="take the device out of every ring")
    _sink_args(k, None)
    k.add_argument("--trust-root", type=Path, metavar="ROOT.json",
                   help="rotate to this trust root (the next version, signed by the current one)")
    k.add_argument("--providers", metavar="P1,P2",
                   help="ONNX Runtime execution providers the application uses, in order "
                   "(instead of each release's)")
    fallback = k.add_mutually_exclusive_group()
    fallback.add_argument("--provider-fallback", dest="fallback", action="store_true",
                          default=None,
                          help="a provider this device lacks is skipped (and reported)")
    fallback.add_argument("--no-provider-fallback", dest="fallback", action="store_false",
                          help="a provider this device lacks fails the check")
    k.add_argument("--graph-optimization-level", metavar="LEVEL",
                   help="ONNX Runtime graph optimisation: disable, basic, extended or all")
    k.add_argument("--execution-mode", metavar="MODE",
                   help="ONNX Runtime execution mode: sequential or parallel")
    k.add_argument("--intra-op-threads", type=int, metavar="N",
                   help="threads within an operator (0: ONNX Runtime's default)")
    k.add_argument("--inter-op-threads", type=int, metavar="N",
                   help="threads across operators (0: ONNX Runtime's default)")
    k.add_argument("--reset-runtime", action="store_true",
                   help="forget the providers, fallback and session options set here: each "
                   "release decides again")
    json_option(k)

    n = cmd("install", "verify, store, health-check and switch to a bundle ('-' reads stdin)",
            "airlock-agent install /media/usb/vision-1.3.0.airlock.part001 --json")
    n.add_argument("bundle", metavar="BUNDLE",
                   help="the bundle file; or its parts: BUNDLE.part001, BUNDLE.parts.json "
                   "or their directory; or - to read it from standard input")
    n.add_argument("--no-switch", action="store_true",
                   help="install and health-check, but keep the active release")
    n.add_argument("--hold", type=float, metavar="SECONDS",
                   help="switch, but go back to the previous release unless 'commit' comes "
                        "within SECONDS")
    n.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for another agent command to finish")
    json_option(n)

    cm = cmd("commit", "make a held install (install --hold) final",
             "airlock-agent commit --json")
    cm.add_argument("--json", action="store_true",
                   help="print the result as one JSON object (a failure too: {error, exit})")

    fl = cmd("flags", "show effective feature flags; apply or roll back a signed flags set",
             "airlock-agent flags apply /media/usb/site-flags.airlock")
    fl.add_argument("action", nargs="?", choices=("show", "apply", "rollback"), default="show",
                    help="show the effective flags (default), apply a flags bundle, or go back "
                    "to the previous flags set of a name")
    fl.add_argument("target", nargs="?", metavar="FILE|NAME",
                    help="flags bundle to apply, or the name of the set to roll back")
    fl.add_argument("--json", action="store_true",
                   help="print the result as one JSON object (a failure too: {error, exit})")

    s = cmd("status", "show the active and previous release, agent state and disk use",
            ("airlock-agent status --json", "airlock-agent status --html /media/usb/cam-7.html"))
    json_option(s)
    s.add_argument("--html", type=Path, metavar="FILE.html",
                   help="also write the status page serve shows at / (one self-contained file)")

    h = cmd("history", "show the journal of every action", "airlock-agent history --verify")
    h.add_argument("--verify", action="store_true", help="check the journal's hash chain")
    h.add_argument("--last", type=int, default=0, metavar="N",
                   help="only the last N entries (0: all)")
    json_option(h)

    r = cmd("rollback", "switch back to the previous release at once",
            ("airlock-agent rollback", "airlock-agent rollback --check --json"),
            "Switch back to the previous release, run its post-switch hook and probe. Its\n"
            "model health check is not run again: it passed when the release was installed,\n"
            "and its files are the same content-addressed blobs (checked with stat, so a\n"
            "rollback takes as long for a 10 GiB model as for a 1 MiB one). --check runs it\n"
            "again before the switch, e.g. after 'config --providers' changed how models run.")
    r.add_argument("--check", action="store_true",
                   help="health-check the release before switching to it; if it fails, try "
                   "the other installed releases, newest first")
    json_option(r)

    c = cmd("check", "re-run the health check of the active release",
            "airlock-agent check --rollback-on-failure")
    c.add_argument("--rollback-on-failure", action="store_true",
                   help="roll back when the check fails")
    json_option(c)

    g = cmd("gc", "remove old releases and unused blobs (never current or previous)",
            "airlock-agent gc --keep 2")
    g.add_argument("--keep", type=int, default=2, metavar="N",
                   help="installed releases to keep besides current and previous")
    json_option(g)

    v = cmd("inventory", "what this device holds, signed with its device key (for delta bundles)",
            "airlock-agent inventory -o /media/usb/cam-7.inventory.json")
    v.add_argument("-o", "--output", metavar="FILE",
                   help="write the signed inventory to FILE ('-' for standard output)")
    json_option(v)

    f = cmd("fsck", "check the store, releases, links and journal; --repair fixes what it can",
            "airlock-agent fsck --repair --json")
    f.add_argument("--repair", action="store_true",
                   help="undo unfinished work, remove corrupt blobs and broken releases")
    f.add_argument("--read-only", action="store_true",
                   help="check without taking the lock and never repair (a new agent's "
                        "self-check while the running one holds the lock)")
    json_option(f)

    w = cmd("serve", "run until stopped: /metrics, drop-folder installs, scheduled checks",
            "airlock-agent serve --listen 127.0.0.1:9400 --watch /media/usb --check-every 15m")
    w.add_argument("--listen", default="127.0.0.1:9400", metavar="HOST:PORT",
                   help="where /metrics, /healthz and /status answer")
    w.add_argument("--watch", type=Path, action="append", default=[], metavar="DIR",
                   help="drop folder: install bundles that appear here (repeatable)")
    w.add_argument("--check-every", default="15m", metavar="DURATION",
                   help="re-check the active release this often (e.g. 30s, 15m, 1h; 0 = never)")
    w.add_argument("--revert-on-failed-check", action="store_true",
                   help="roll back when a scheduled check fails")
    w.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                   help="a dropped file must stay unchanged this long before it is read")
    w.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                   help="how often drop folders and samples are looked at")
    w.add_argument("--log", type=Path, metavar="FILE",
                   help="append one JSON line per event here (default: stderr)")

    o = cmd("report", "write a report signed with the device key, to carry home",
            "airlock-agent report -o /media/usb/airlock-reports/cam-7.report.json")
    o.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="report file (default: standard output)")
    o.add_argument("--since", default="last", metavar="LAST",
                   help="journal entries since: 'last' report (default), 'all', an ISO time, "
                        "or an earlier report file")
    json_option(o)

    comp = cmd("completion", "print a shell completion script for airlock-agent",
               "airlock-agent completion bash > /etc/bash_completion.d/airlock-agent")
    comp.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")

    k = cmd("self-install", "finish installing this agent from a kit (run by the kit's "
            "install.sh)", "sh install.sh --trust root.json   # runs: airlock-agent "
            "self-install --kit DIR --prefix /opt/airlock")
    k.add_argument("--kit", type=Path, required=True, help="the unpacked kit directory")
    k.add_argument("--prefix", type=Path, default=Path("/opt/airlock"),
                   help="where agents live (default /opt/airlock)")
    k.add_argument("--trust", type=Path, help="trust root, for a ROOT not initialised yet")
    k.add_argument("--bin-dir", type=Path, default=Path("/usr/local/bin"),
                   help="where to link airlock-agent (default /usr/local/bin)")
    k.add_argument("--systemd-dir", type=Path, default=Path("/etc/systemd/system"),
                   help="where the agent's systemd unit is written (default /etc/systemd/system)")
    k.add_argument("--device-id", help="device name for init (default: the host name)")
    k.add_argument("--ring", help="deployment ring for init")
    k.add_argument("--no-init", action="store_true", help="do not run init on a new ROOT")
    json_option(k)
    return p


def parser() -> argparse.ArgumentParser:
    """The whole ``airlock-agent`` command line (for completion scripts and man pages)."""
    return _parser()


def _init(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.configure import check_ring, check_sink, sink_settings
    from keys.keyfile import generate_keypair
    from keys.trust import TrustRoot

    if layout.is_initialised():
        raise UsageError(f"{layout.root} is already initialised; use another --root "
                         "('airlock-agent config' changes its settings)")
    trust = TrustRoot.given(read_input(a.trust, "trust root"), f"--trust {a.trust}")
    if a.ring is not None:
        check_ring(a.ring)
    # Before anything is written: a sink the first install could not use is refused now.
    sink = sink_settings(a.sink, a.sink_option)
    check_sink(sink, layout.images)
    for d in layout.directories():
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create {d}: {e.strerror}; choose another --root") from None
    with AgentLock(layout.lock):
        write_atomic(layout.trust_root, trust.to_bytes())
        write_json(layout.sequences, {})
        for p in (layout.device_key, layout.device_pub):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        generate_keypair("device", layout.root)
        fsync_dir(layout.root)
        config = AgentConfig(a.device_id or socket.gethostname(), a.ring, sink)
        write_format(layout)
        Journal(layout.journal).append("initialised", device_id=config.device_id,
                                       ring=config.ring, trust_version=trust.version)
        import yaml

        # Written last: its presence is what "initialised" means.
        write_atomic(layout.config, yaml.safe_dump(config.to_dict(), sort_keys=True).encode())
    from keys.keyfile import load_public_key

    key = load_public_key(layout.device_pub)
    return {"root": str(layout.root), "device_id": config.device_id, "ring": config.ring,
            "trust_version": trust.version, "device_key": str(layout.device_pub),
            "device_keyid": key.keyid, "device_public_key": layout.device_pub.read_text(),
            "sink": config.sink}


def _config(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.configure import KEEP, check_ring, configure, runtime_settings, sink_settings
    from keys.trust import TrustRoot

    layout.require_initialised()
    ring: Any = KEEP
    if a.no_ring:
        ring = None
    elif a.ring is not None:
        ring = check_ring(a.ring)
    trust_root = None
    if a.trust_root is not None:
        data = read_input(a.trust_root, "trust root")
        TrustRoot.given(data, f"--trust-root {a.trust_root}")  # a root at all, before the lock
        trust_root = data
    session = {k: v for k, v in (("graph_optimization_level", a.graph_optimization_level),
                                 ("execution_mode", a.execution_mode),
                                 ("intra_op_threads", a.intra_op_threads),
                                 ("inter_op_threads", a.inter_op_threads)) if v is not None}
    providers = None if a.providers is None else [p.strip() for p in a.providers.split(",")]
    runtime_change = (a.reset_runtime or providers is not None or a.fallback is not None
                      or bool(session))
    changing = (ring is not KEEP or a.sink or a.sink_option or trust_root is not None
                or runtime_change)

    def work() -> dict[str, Any]:
        current = layout.load_config()
        sink = None
        if a.sink or a.sink_option:
            sink = sink_settings(a.sink or current.sink.get("type", "oci-dir"), a.sink_option,
                                 base=current.sink)
        runtime = None
        if runtime_change:
            runtime = runtime_settings(current.runtime, providers=providers,
                                       fallback=a.fallback, session=session,
                                       reset=a.reset_runtime)
        return configure(layout, Journal(layout.journal), ring=ring, sink=sink,
                         trust_root=trust_root, runtime=runtime)

    if not changing:  # show only: no lock, so it answers while an install runs
        return configure(layout, Journal(layout.journal), sink=None, trust_root=None)
    return _mutating(layout, 0.0, work)


def _say_recovered(actions: list[str]) -> None:
    for line in actions:
        say("airlock-agent", "recovered", line)


def _mutating(layout: Layout, wait: float, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    from agent.recovery import recover
    from agent.rollback import enforce_hold
    from agent.shape import require_sound

    layout.require_initialised()
    # Before the lock and before recovery: recovery empties staging/ and repoints links,
    # which must never happen through a link out of ROOT or over a stray directory.
    require_sound(layout)
    with AgentLock(layout.lock, wait=wait):
        _say_recovered(recover(layout))
        _migrate(layout)
        reverted = enforce_hold(layout)
        if reverted is not None:
            say("airlock-agent", "reverted", reverted["reason"])
        result = work()
    return result


def _migrate(layout: Layout) -> None:
    from agent.rootformat import ROOT_FORMAT, migrate, root_format

    if root_format(layout) >= ROOT_FORMAT:
        return  # nothing to migrate, so no need to import selfupdate to ask who may
    from agent.self.selfupdate import may_migrate

    if may_migrate():
        for line in migrate(layout, Journal(layout.journal)):
            say("airlock-agent", "note", line)


def _install(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.install import install
    from airlock.format.parts import open_media

    layout.require_initialised()
    # Opened before the lock is taken: a path that is not a bundle file (a FIFO nobody
    # writes to, /dev/zero, a directory that is not a bundle's parts) is refused without
    # holding up other commands.
    stream, size = open_media(a.bundle)
    with stream:
        def work() -> dict[str, Any]:
            with progress(size, "installing") as tick:
                result = install(layout, stream, label=a.bundle, switch=not a.no_switch,
                                 progress=tick, hold=a.hold)
            if (result.get("release") and result.get("active") == result["release"]
                    and not result.get("held_until")):
                # The release is committed; now the agent it carries, if any (exit 4 on failure).
                from agent.self.selfupdate import update_from_release

                with phase_bars() as bars:
                    result["agent"] = update_from_release(layout, result["release"],
                                                          progress=bars)
            return result

        return _mutating(layout, a.wait, work)


def _status(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.observe.status import status
    from agent.recovery import needs_recovery, recover
    from agent.shape import find_flaws, is_read_only

    layout.require_initialised()
    # Repair first when a crash left work behind and no one else is working; a plain
    # status never takes the lock, so polling it cannot make an install exit 5. A damaged
    # or read-only ROOT is only reported: recovery is for what a crash leaves, not for that.
    sound = not any(f.blocking for f in find_flaws(layout)) and not is_read_only(layout)
    if sound and needs_recovery(layout):
        with contextlib.suppress(PreconditionError, PermissionError), AgentLock(layout.lock):
            _say_recovered(recover(layout))
    st = status(layout)
    if getattr(a, "html", None) is not None:
        st["html"] = _status_html(layout, st, a.html)
    return st


def _status_html(layout: Layout, st: dict[str, Any], path: Path) -> str:
    """The status page as a file (for a laptop without network, or the stick)."""
    from agent.observe.statuspage import drop_results, journal_tail, render

    if path.suffix.lower() not in (".html", ".htm") or path.is_dir():
        raise UsageError(f"--html {path}: give a file name ending in .html")
    page = render(st, journal_tail(layout), drops=drop_results(layout), watch=[], refresh_s=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, page.encode())
    return str(path.absolute())


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

    return _mutating(layout, 0.0, lambda: rollback(layout, check=a.check))


def _commit(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.hold import commit

    return _mutating(layout, 0.0, lambda: commit(layout))


def _flags(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.feature_flags import rollback_flags, show_flags

    layout.require_initialised()
    if a.action == "show":
        return show_flags(layout)
    if not a.target:
        raise UsageError(f"flags {a.action} needs a {'FILE' if a.action == 'apply' else 'NAME'}")
    if a.action == "rollback":
        return _mutating(layout, 0.0, lambda: rollback_flags(layout, a.target))
    from agent.feature_flags import apply_flags, flags_bytes
    from airlock.format.bundle import BundleReader
    from airlock.format.parts import open_media

    stream, _ = open_media(a.target)
    with stream:  # the reader bounds the metadata and refuses any member after it
        got = flags_bytes(BundleReader(stream))
    if got is None:
        raise UsageError(f"{a.target} is a release bundle, not flags; use 'airlock-agent install'")
    return _mutating(layout, 0.0, lambda: apply_flags(layout, got, a.target))


def _check(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.rollback import check

    return _mutating(layout, 0.0, lambda: check(layout,
                                                rollback_on_failure=a.rollback_on_failure))


def _gc(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.gc import gc

    return _mutating(layout, 0.0, lambda: gc(layout, keep=a.keep))


def _inventory(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.observe.inventory import inventory, write_inventory
    from keys.device import INVENTORY_TYPE, sign_document
    from keys.keyfile import load_signer

    layout.require_initialised()  # reads only: no lock, so it never waits for an install
    if a.output == "-":
        body = inventory(layout)
        sys.stdout.buffer.write(sign_document(body, INVENTORY_TYPE,
                                              load_signer(layout.device_key)))
        sys.stdout.flush()
        return {}
    if a.output:
        _, body = write_inventory(layout, Path(a.output))
    else:
        body = inventory(layout)
    from keys.keyfile import load_public_key

    return {"output": a.output, "keyid": load_public_key(layout.device_pub).keyid,
            "inventory": body}


def _fsck(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.fsck import fsck
    from agent.shape import lock_is_debris, repair_shape

    layout.require_initialised()
    if a.read_only and a.repair:
        raise UsageError("--read-only and --repair exclude each other")
    if a.read_only:
        # A new agent's self-check while the running agent holds the lock: no lock, no repair.
        result = fsck(layout, repair=False)
        return _fsck_verdict(result, a)
    before: list[str] = []
    if a.repair and lock_is_debris(layout):
        # No command can hold a lock that is not a file, so this one step goes unlocked.
        before = repair_shape(layout, only=[layout.lock])[0]
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(AgentLock(layout.lock))
        except LockedError:
            raise
        except PreconditionError:
            if a.repair:
                raise
            # Read-only ROOT, or a lock that is not a file: a check only reads, so it goes on.
        result = fsck(layout, repair=a.repair, done_before=before)
    return _fsck_verdict(result, a)


def _fsck_verdict(result: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    if not result["ok"]:
        # The report goes to stdout, the verdict to stderr with exit 3.
        first = result["problems"][0]
        hint = "" if a.repair else "; run 'airlock-agent fsck --repair'"
        n = len(result["problems"])
        fail_with(result, RejectedError(
            f"{n} inconsistenc{'y remains' if n == 1 else 'ies remain'} "
            f"(first: {first['path']}: {first['detail']}){hint}"), _human("fsck"))
    return result


def _report(layout: Layout, a: argparse.Namespace) -> dict[str, Any] | None:
    from agent.observe.report import signed_report

    layout.require_initialised()
    data = signed_report(layout, a.since)
    if a.output is None:
        sys.stdout.buffer.write(data)
        return None
    try:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(a.output, data)
    except OSError as e:
        raise UsageError(f"cannot write report {a.output}: {e.strerror}") from None
    body = _payload(data)
    journal = body["journal"]
    return {"output": str(a.output), "bytes": len(data), "device_id": body["device_id"],
            "entries": len(journal["entries"]), "since": journal["since"],
            "from_line": journal["from_line"], "to_line": journal["to_line"]}


def _payload(data: bytes) -> dict[str, Any]:
    """What a report just signed here says (checked against its own key, like the host will)."""
    from keys.device import REPORT_TYPE, verify_document

    return verify_document(data, REPORT_TYPE).body


def _serve(layout: Layout, a: argparse.Namespace) -> dict[str, Any] | None:
    from agent.observe.serve import ServeOptions, serve

    layout.require_initialised()
    serve(layout, ServeOptions.from_args(a.listen, a.watch, a.check_every,
                                         a.revert_on_failed_check, a.settle, a.poll, a.log))
    return None
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
    line = (f"{label:<9} {r['name']} {r['version']} (sequence {r['sequence']})  "
            f"installed {r.get('installed_at') or '?'}  health: {health}")
    for model, values in (r.get("metrics") or {}).items():
        shown = ", ".join(f"{k} {values[k]:.4g}" for k in values.get("checked") or []
                          if isinstance(values.get(k), int | float))
        line += f"\n{'':<9} {model}: {shown} on {values.get('samples')} evaluation samples"
    return line


_SHOWN = 5  # damage lines status prints before "and N more"
_HOOK_LINES = 5  # lines of a hook's output install shows (the journal keeps its tail)


def _activation_lines(activation: dict[str, Any] | None) -> list[str]:
    """What the post-switch hook and the probe said, as the person at the site should see it."""
    lines: list[str] = []
    for key, label in (("hook", "post-switch hook"), ("probe", "probe")):
        step = (activation or {}).get(key)
        if not step or step.get("reason", "").startswith("no "):
            continue
        lines.append(f"{label}: {'ok' if step['ok'] else 'FAILED'} in {step['seconds']:.1f} s")
        # The text is already inert: its line breaks arrive escaped, as two characters.
        output = [ln for ln in str(step.get("output_tail") or "").split("\\n") if ln.strip()]
        lines += [f"  | {ln}" for ln in output[-_HOOK_LINES:]]
    return lines


def _inputs_line(model: str, seen: dict[str, Any]) -> str:
    """``inputs    classifier: 12 contract violation(s) in 960 rows of 3 file(s): x max 12``."""
    broken = ", ".join(f"{name} {rule} {n}" for name, rules in seen["violations"].items()
                       for rule, n in rules.items())
    line = (f"inputs    {model}: {seen['total']} contract violation(s) in {seen['rows']} rows of "
            f"{seen['files']} sample file(s) in {seen['folder']}" + (f": {broken}" if broken else ""))
    if seen["unreadable"]:
        line += f"; {len(seen['unreadable'])} unreadable (first: {seen['unreadable'][0]})"
    return line


def _human(cmd: str) -> Callable[[dict[str, Any]], str]:
    def fmt(d: dict[str, Any]) -> str:
        if cmd == "init":
            return (f"initialised {d['root']} for device {d['device_id']}"
                    + (f" in ring {d['ring']}" if d["ring"] else "")
                    + f" (trust root version {d['trust_version']})\n"
                    + f"device key {d['device_keyid']} ({d['device_key']}); it signs this "
                      "device's inventories and reports; enroll it at headquarters with "
                      f"'airlock report enroll {d['device_id']}.pub --device-id {d['device_id']}':\n"
                    + str(d["device_public_key"]).rstrip())
        if cmd == "inventory":
            inv = d["inventory"]
            size = sum(b["size"] for b in inv["blobs"])
            lines = [f"device    {inv['device_id']}" + (f" (ring {inv['ring']})" if inv["ring"]
                                                        else "") + f", key {d['keyid'][:16]}…",
                     f"active    {inv['active'] or 'none'}; previous {inv['previous'] or 'none'}"]
            lines += [f"release   {r['id']}: " + (r.get("error") or
                                                  f"{r['name']} {r['version']} (sequence "
                                                  f"{r['sequence']})") for r in inv["releases"]]
            lines.append("accepted  " + (", ".join(f"{k} up to sequence {v}" for k, v in
                                                   sorted(inv["sequences"].items())) or "nothing"))
            lines.append(f"store     {len(inv['blobs'])} blobs, {human_size(size)}")
            if d["output"]:
                lines.append(f"signed inventory written to {d['output']}; carry it to the host "
                             "for 'airlock build --delta-from'")
            return "\n".join(lines)
        if cmd == "report":
            return (f"wrote the signed report of {d['device_id']} to {d['output']}: "
                    f"{d['entries']} journal entr{'y' if d['entries'] == 1 else 'ies'} "
                    f"(since {d['since']}), {human_size(d['bytes'])}")
        if cmd == "install" and d.get("applied") is True:
            return (f"applied flags {d['name']} sequence {d['sequence']} (models untouched): "
                    + ", ".join(f"{k}={json.dumps(v['value'])}" for k, v in d["flags"].items()))
        if cmd == "install":
            agent = _agent_line(d.get("agent"))
            if not d["installed"]:
                return str(d["message"]) + agent
            where = "active" if d["switched"] else "installed, not switched to"
            if d.get("held_until"):
                where += (f", held until {d['held_until']} ('airlock-agent commit' makes it "
                          f"final, else {d['previous']} comes back)")
            return "\n".join([
                f"installed {d['name']} {d['version']} (sequence {d['sequence']}), {where}; "
                f"{d['blobs_stored']} blob(s) stored, {d['blobs_skipped']} already present, "
                f"health ok in {d['health_s']:.1f} s; total {d['seconds']:.1f} s",
                *_activation_lines(d.get("activation"))]) + agent
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
            device = d["device_id"] or "unknown (agent.yaml is damaged)"
            lines = [f"device    {device}" + (f" (ring {d['ring']})" if d["ring"] else ""),
                     f"agent     {d['agent']['version']} ({d['agent']['platform']}, Python "
                     f"{d['agent']['python']}, "
                     + (f"kit {d['agent']['kit']})" if d["agent"]["kit"] else "pip)"),
                     _release_line("active", d["active"]),
                     _release_line("previous", d["previous"]),
                     f"state     {d['state']}"
                     + (f" (pid {d['lock_holder']})" if d["lock_holder"] else ""),
                     f"store     {d['store']['blobs']} blobs, {human_size(d['store']['bytes'])}; "
                     f"{len(d['releases'])} release(s); disk {human_size(d['disk']['free'])} free"]
            for model, dr in sorted((d.get("drift") or {}).get("models", {}).items()):
                score = ("no score" if dr.get("psi") is None
                         else f"PSI {dr['psi']:.3f} ({'WARNING: over' if dr['warn'] else 'under'} "
                              f"{dr['threshold']:g})")
                lines.append(f"drift     {model}: {score}, {dr.get('rows', 0)} recent row(s)"
                             + (f"; {dr['note']}" if dr.get("note") else ""))
            if last:
                what = " ".join(str(x) for x in (last["event"], last.get("release")) if x)
                lines.append(f"last      {last['time']} {what}: {last.get('reason') or ''}")
            for model, seen in (d.get("inputs") or {}).items():
                if seen["files"]:  # nothing dropped yet: nothing to say
                    lines.append(_inputs_line(model, seen))
            if d["read_only"]:
                lines.append("read-only ROOT is mounted read-only: nothing can be installed")
            damage = d["damage"]
            for line in damage[:_SHOWN]:
                lines.append(f"damaged   {line}")
            if len(damage) > _SHOWN:
                lines.append(f"damaged   … and {len(damage) - _SHOWN} more (see --json)")
            if damage:
                lines.append("          run 'airlock-agent fsck --repair' (it says what it "
                             "cannot fix)")
            if d.get("html"):
                lines.append(f"page      {d['html']}")
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
        if cmd == "config":
            sink = d["sink"]
            options = ", ".join(f"{k}={v}" for k, v in sorted(sink.items()) if k != "type")
            lines = [f"changed   {c}" for c in d["changed"]]
            runtime = d.get("runtime") or {}
            session = ", ".join(f"{k}={v}" for k, v in (runtime.get("session") or {}).items())
            lines += [f"device    {d['device_id']}",
                      f"ring      {d['ring'] or '(none: only releases for every ring)'}",
                      f"sink      {sink.get('type', 'oci-dir')}" + (f" ({options})" if options else ""),
                      f"trust     root version {d['trust_version']}",
                      "providers " + (", ".join(runtime["providers"]) if runtime.get("providers")
                                      else "as each release says"),
                      "fallback  " + ("as each release says"
                                      if runtime.get("provider_fallback") is None
                                      else "allowed" if runtime["provider_fallback"]
                                      else "refused"),
                      "session   " + (session or "as each release says")]
            return "\n".join(lines)
        if cmd == "rollback":
            # Releases named as status names them: NAME VERSION (sequence N).
            done = (f"rolled back from {d.get('from_release') or d['from']} to {d['name']} "
                    f"{d['version']} (sequence {d['sequence']})")
            if d.get("checked"):
                why = "" if d.get("check_reason") == "asked to" else f"; {d.get('check_reason')}"
                return done + f"\nhealth check passed just now ({d['health_s']} s{why})"
            return done + (f"\nhealth check passed at {d.get('health_time')} and its files "
                           "are unchanged: not re-run ('rollback --check' re-runs it first)")
        if cmd == "flags":
            if "flags" not in d:
                return "\n".join(f"{k}: {v}" for k, v in d.items())
            head = (f"flags {d['name']} sequence {d['sequence']} applied\n" if d.get("applied")
                    is True else f"flags {d['name']}: back from #{d['from']} to "
                    f"{'#' + str(d['to']) if d['to'] else 'release defaults'}\n"
                    if "from" in d else "")
            return head + "\n".join(
                f"{k:<20} {json.dumps(v['value']):<12} {v['source']}"
                + (f" ({v['note']})" if v.get("note") else "") for k, v in d["flags"].items())
        if cmd == "commit":
            return (f"committed {d['committed']}: it is final; "
                    f"{d['previous'] or 'no release'} is no longer armed to come back")
        if cmd == "check":
            return "\n".join([f"{d['release']}: health check ok",
                              *(_inputs_line(m, seen) for m, seen in d["inputs"].items())])
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


def _completion(a: argparse.Namespace) -> None:
    try:
        import shtab
    except ImportError:
        raise PreconditionError("shell completion needs the shtab package: "
                                "pip install 'airlock-edge[agent]'") from None
    print(shtab.complete(parser(), shell=a.shell), end="")


def _version_only(argv: list[str]) -> bool:
    """``airlock-agent --version [--json]``, without a command."""
    pre = Parser(add_help=False)
    for flag in ("--version", "--json", "--debug"):
        pre.add_argument(flag, action="store_true")
    pre.add_argument("--root")
    known, rest = pre.parse_known_args(argv)
    return bool(known.version) and not rest


def _self_install(layout: Layout, a: argparse.Namespace) -> dict[str, Any]:
    from agent.self.selfupdate import self_install

    return self_install(a.kit.absolute(), a.prefix.absolute(), layout,
                        trust_file=a.trust.absolute() if a.trust else None,
                        bin_dir=a.bin_dir.absolute(), systemd_dir=a.systemd_dir,
                        device_id=a.device_id, ring=a.ring, init=not a.no_init)


def _main(argv: list[str]) -> int:
    if _version_only(argv):
        from agent.self.identity import identity

        emit(identity(), "--json" in argv, _human("version"))
        return 0
    top = _parser()
    a = top.parse_args(argv)
    apply_output_options(a)
    if a.cmd is None:  # a bare 'airlock-agent' is asking what there is
        print(top.format_help(), end="")
        return 0
    if a.cmd == "completion":
        _completion(a)
        return 0
    layout = Layout(root_from_env(getattr(a, "root", None)))
    if a.cmd != "init" and layout.is_initialised():
        check_format(layout)  # an agent older than ROOT's format refuses it, in one line
    handlers: dict[str, Callable[[Layout, argparse.Namespace], dict[str, Any] | None]] = {
        "init": _init, "config": _config, "install": _install, "status": _status,
        "history": _history, "rollback": _rollback, "commit": _commit, "flags": _flags, "check": _check, "gc": _gc, "fsck": _fsck,
        "serve": _serve, "report": _report, "inventory": _inventory,
        "self-install": _self_install,
    }
    result = handlers[a.cmd](layout, a)
    if a.cmd == "inventory" and a.output == "-":
        return 0  # standard output holds the signed document and nothing else
    if result is not None:
        emit(result, getattr(a, "json", False), _human(a.cmd))
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    run(_main, argv, prog="airlock-agent")
