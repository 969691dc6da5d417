"""``airlock-agent serve``: one long-running process that watches, installs and reports.

::

    airlock-agent serve --listen 127.0.0.1:9400 --watch /media/usb --check-every 15m \\
        --revert-on-failed-check --log /var/log/airlock/serve.jsonl

What it does, in one loop on the main thread (every ``--poll`` seconds):

1. **drop folders**: a bundle that appears in a ``--watch`` folder is installed
   once it is complete and stable, exactly once (``agent.observe.dropfolder``); its
   result is written beside it, and a fresh signed report into
   ``airlock-reports/DEVICE.report.json`` on the same stick when it is writable;
2. **scheduled check**: right after start and then every ``--check-every``
   the active release is health-checked again; with ``--revert-on-failed-check`` a failed check
   rolls back (as ``check --rollback-on-failure`` does);
3. **drift**: when the sample files or the active release change, drift is
   computed again (``agent.observe.sample_drift``); a model crossing its threshold is logged
   and journaled once. The input-contract violations in the same files are
   counted again then too (``agent.observe.input_contract``), for ``/metrics``.

Each install and check takes the same lock as the command line (a manual
``airlock-agent install`` and ``serve`` never collide: whoever comes second
waits, or retries next poll) and first repairs what a crash left behind. A
dropped bundle goes through the door ``airlock-agent install`` uses
(``agent.operations.install_run``): a damaged ROOT is refused before anything
changes (outcome ``refused``, exit 5, retried later), and a release carrying a
newer agent kit updates the agent (``agent-updated``; serve keeps the code it
started with until it is restarted).

HTTP, on threads beside the loop (bind it to 127.0.0.1 or a site network):
``/metrics`` (``agent.observe.metrics``), ``/healthz`` (the loop is alive), ``/status``
(the ``status --json`` document) and ``/`` (the status page a technician opens,
``agent.observe.statuspage``).

Shutdown: SIGTERM or SIGINT lets an install in progress finish, then exits
0; a second signal aborts it, and the install undoes itself before the
process exits (the device is left as it was before that install). A kill -9
is a crash like any other: the next agent command recovers. One JSON object
per line goes to ``--log`` or stderr for every event (``serve-started``,
``drop-result``, ``check-result``, ``drift-warning``, ``hold-expired``, ``shadow-run``,
``promoted``, ``serve-stopped``...).

5. **shadow runs**: every ``--shadow-every`` the challenger staged with
   ``install --no-switch`` is compared again with the running model on the
   newest samples (``agent.challenger.rerun``; agreement and latency ratio
   in ``/metrics``, ``status`` and the page); with ``--auto-promote K`` it
   is promoted once its last K runs all met its spec's thresholds.

4. **holds**: an ``install --hold`` not committed by its deadline is rolled
   back (``agent.hold``), checked every poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import FrameType
from typing import IO, Any

from agent.journal import Journal
from agent.layout import Layout
from agent.lock import AgentLock
from agent.observe.drop_memory import Carried
from agent.observe.dropfolder import (
    RETRY_S,
    Candidate,
    DropFolder,
    DropMemory,
    Outcome,
    flags_message,
    outcome_of_error,
)
from agent.observe.input_contract import ContractWatch
from agent.observe.logfile import RotatingLog
from agent.observe.metrics import Observed, metrics_registry
from agent.observe.relay import RelayOptions, start_relay
from agent.observe.sample_drift import DriftWatch
from airlock.errors import (
    AirlockError,
    HealthCheckError,
    LockedError,
    PreconditionError,
    UsageError,
)
from airlock.limits import MAX_DROPS_PER_SCAN
from airlock.relay.listener import BoundedHTTPServer

__all__ = ["REPORTS_DIR", "ServeOptions", "serve"]

#: Folder on a writable stick where serve leaves the device's signed report.
REPORTS_DIR = "airlock-reports"
_PAGE_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# How long an install or check waits for a manual command's lock before the next poll.
_LOCK_WAIT_S = 0.5


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 9400
    watch: list[Path] = field(default_factory=list)
    check_every_s: float = 900.0  # 0: never
    revert: bool = False
    settle_s: float = 2.0
    poll_s: float = 1.0
    log: Path | None = None
    shadow_every_s: float = 0.0  # 0: never (agent.challenger.rerun)
    auto_promote: int = 0  # promote after this many passing shadow runs in a row; 0: never
    relay: RelayOptions | None = None  # ``--registry``: the site relay's own listener

    @classmethod
    def from_args(cls, listen: str, watch: list[Path], check_every: str, revert: bool,
                  settle: float, poll: float, log: Path | None, shadow_every: str = "0",
                  auto_promote: int = 0) -> ServeOptions:
        from airlock.durations import parse_duration

        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise UsageError(f"--listen {listen!r} must be HOST:PORT, e.g. 127.0.0.1:9400")
        every = 0.0 if check_every.strip() == "0" else parse_duration(check_every).total_seconds()
        if settle < 0 or poll <= 0:
            raise UsageError("--settle must be 0 or more and --poll more than 0 seconds")
        for d in watch:
            if d.exists() and not d.is_dir():
                raise UsageError(f"--watch {d} is not a directory")
        shadow = (0.0 if shadow_every.strip() == "0"
                  else parse_duration(shadow_every).total_seconds())
        if auto_promote < 0 or (auto_promote and not shadow):
            raise UsageError("--auto-promote K needs K >= 1 and --shadow-every")
        return cls(host.strip("[]") or "127.0.0.1", int(port), [d.absolute() for d in watch],
                   every, revert, settle, poll, log, shadow, auto_promote)


class EventLog:
    """One JSON object per line, to a file (appended, flushed per line) or stderr."""

    def __init__(self, path: Path | None) -> None:
        # A file rotates itself (agent.observe.logfile): serve runs for as long as the device.
        self._out: IO[str] | RotatingLog = (RotatingLog(path) if path is not None
                                            else sys.stderr)
        self._owned = path is not None
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event,
                 **fields}
        line = json.dumps(entry, sort_keys=True, default=str, ensure_ascii=True)
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._out.write(line + "\n")
            self._out.flush()

    def close(self) -> None:
        if self._owned:
            self._out.close()


class _Abort(BaseException):
    """A second stop signal: unwind the install in progress (it undoes itself)."""


class _Server:
    """The state of one ``serve`` run."""

    def __init__(self, layout: Layout, options: ServeOptions, log: EventLog) -> None:
        self.layout, self.options, self.log = layout, options, log
        self.config = layout.load_config()
        self.observed = Observed()
        self.registry = metrics_registry(layout, self.observed)
        self.drift = DriftWatch(layout)
        self.contracts = ContractWatch(layout)
        self.drops = DropFolder(options.watch, options.settle_s, DropMemory.load(layout.drops))
        self.stop = threading.Event()
        self.busy: str | None = None  # "installing NAME" or "checking" while it happens
        self.started = time.monotonic()
        self.heartbeat = time.monotonic()
        self.warned: set[tuple[str, str]] = set()  # (release, model) over their drift threshold
        self.told_overflow: set[str] = set()  # watched folders said to hold too many drops
        self.told_failed: set[str] = set()  # drops whose failure was logged
        # The first check comes right after start: after a reboot or an upgrade of the
        # runtime, whether the active model still works is the first thing to know.
        self.next_check = time.monotonic() if options.check_every_s else None
        self.next_shadow = time.monotonic() if options.shadow_every_s else None

    # -- signals ---------------------------------------------------------------
    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.stop.is_set():
            self.stop.set()
            self.log("serve-stopping", signal=name,
                     waiting_for=self.busy or None)
            return
        if self.busy:
            self.log("serve-aborting", signal=name, aborting=self.busy)
            raise _Abort(f"stopped by a second {name}")

    # -- the loop --------------------------------------------------------------
    def run(self) -> None:
        while not self.stop.is_set():
            self.heartbeat = time.monotonic()
            for c in self.drops.ready():
                if self.stop.is_set():
                    break
                self.guarded(self.handle, c)
            for path, reason in sorted(self.drops.failed.items()):
                if path not in self.told_failed:  # logged once, counted once
                    self.told_failed.add(path)
                    self.observed.drops["error"] += 1
                    self.log("error", drop=path, reason=reason)
            for folder in sorted(self.drops.overflow - self.told_overflow):
                self.told_overflow.add(folder)  # once: the journal must not grow per poll
                self.log("drop-folder-full", folder=folder, drops_per_poll=MAX_DROPS_PER_SCAN,
                         note="more drops than one poll takes; the rest are not looked at")
            if self.next_check is not None and time.monotonic() >= self.next_check:
                self.guarded(self.scheduled_check)
            if self.next_shadow is not None and time.monotonic() >= self.next_shadow:
                self.guarded(self.shadow_run)
            self.guarded(self.hold_deadline)
            self.update_drift()
            self.stop.wait(self.options.poll_s)

    def guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run one step; an unexpected error is logged, never the end of serve.

        Otherwise one bad drop would stop serve, systemd would restart it, and
        the same drop would stop it again. A drop that failed so is tried again
        only after ``RETRY_S``.
        """
        try:
            step(*args)
        except Exception as e:
            what = {"drop": str(args[0].drop.path)} if args else {"step": step.__name__}
            self.log("error", **what, reason=f"{type(e).__name__}: {str(e)[:300]}")
            if args:
                self.observed.drops["error"] += 1  # counted; tried again only after RETRY_S
                outcome = Outcome("error", f"unexpected error: {type(e).__name__}: "
                                  f"{str(e)[:200]}", 1, retry_after_s=RETRY_S)
                with contextlib.suppress(Exception):
                    self.drops.finish(args[0].drop, outcome, self.config.device_id)
            if step == self.scheduled_check:
                self.next_check = time.monotonic() + self.options.check_every_s

    @contextlib.contextmanager
    def locked(self, what: str, revert_hold: bool = True) -> Iterator[bool]:
        """Inside the envelope every change goes through (``agent.operations``): True; or
        False when a manual command holds the lock. A damaged ROOT raises (exit 5)."""
        from agent.operations import envelope

        stack = contextlib.ExitStack()
        try:
            stack.enter_context(envelope(self.layout, wait=_LOCK_WAIT_S, notify=self.notify,
                                         revert_hold=revert_hold))
        except LockedError:
            self.log("lock-busy", waiting=what)
            yield False
            return
        with stack:
            self.busy = what
            try:
                yield True
            finally:
                self.busy = None

    def notify(self, kind: str, message: str) -> None:
        """What the envelope did (``agent.operations.Notify``), as one log event."""
        self.log(kind, action=message)

    # -- drop folder -----------------------------------------------------------
    def handle(self, c: Candidate) -> None:
        from agent.observe.drop_memory import read_carried
        from agent.operator_rollbacks import marked

        drop = c.drop
        carried = read_carried(self.layout, drop) if c.complete else None
        outcome = (self.drops.incomplete(c) if not c.complete
                   else self.drops.skipped(c, carried, marked(self.layout))
                   or self.install(c, carried))
        if outcome is None:
            return  # lock busy: tried again next poll
        self.observed.drops[outcome.outcome] += 1
        problems = self.drops.finish(drop, outcome, self.config.device_id, carried)
        self.log("drop-result", drop=str(drop.path), outcome=outcome.outcome,
                 exit_code=outcome.exit_code, release=outcome.release, message=outcome.message,
                 results_written=not problems, problems=problems or None)
        if outcome.outcome != "incomplete" and not problems:
            self.report_to(drop.folder)

    def install(self, c: Candidate, carried: Carried | None = None) -> Outcome | None:
        """The drop through the door ``install`` uses (``agent.operations.install_run``):
        shape check, lock, recovery, migration, hold, install, then the agent kit it
        carries; a release an operator rolled back is refused under the lock. None when a
        manual command holds the lock (tried again next poll)."""
        from agent.operations import install_run

        what = f"installing {c.drop.path.name}"
        identity = c.drop.identity()

        def begin() -> None:  # under the lock: a manual command now waits for this one
            self.busy = what
            self.log("drop-install", drop=str(c.drop.path), metadata_sha256=c.digest)

        try:
            stream, _ = c.drop.open()
            with stream:
                result = install_run(self.layout, stream, label=str(c.drop.path),
                                     wait=_LOCK_WAIT_S, notify=self.notify, begin=begin,
                                     unattended=True, stick=c.drop.folder)
        except _Abort:
            self.log("drop-aborted", drop=str(c.drop.path))
            raise
        except LockedError:
            self.log("lock-busy", waiting=what)
            return None
        except (AirlockError, OSError) as e:
            outcome = outcome_of_error(e)
            outcome.digest = c.digest
            outcome.release = outcome.release or (carried.release if carried else None)
            if c.drop.identity() != identity:
                outcome.message += ("; the stick was removed or the file changed while it "
                                    "was read: nothing changed, copy it again")
            return outcome
        finally:
            self.busy = None
        agent = result.get("agent") or {}
        if agent.get("updated"):
            self.log("agent-updated", version=agent.get("version"),
                     previous_version=agent.get("previous_version"),
                     note="serve runs the code it started with until it is restarted")
        if result.get("installed"):
            return Outcome("installed", f"installed {result['name']} {result['version']} "
                           f"(sequence {result['sequence']}); {result['active']} is active", 0,
                           digest=c.digest, release=result["release"], active=result["active"],
                           remember="release",
                           detail={"seconds": result.get("seconds"),
                                   "health_s": result.get("health_s"),
                                   **({"agent": result["agent"]} if result.get("agent")
                                      else {})})
        if result.get("applied"):  # a flags bundle: its own outcome, never "already active"
            return Outcome("flags_applied", flags_message(result), 0, digest=c.digest,
                           # by file: a flags set carries no release id, and applying the
                           # same signed set again changes nothing (its own sequence)
                           active=result.get("active"),
                           detail={"flags": result.get("name"),
                                   "sequence": result.get("sequence")})
        return Outcome("already_active", str(result.get("message")), 0, digest=c.digest,
                       release=result.get("release"), active=result.get("active"),
                       remember="release")

    def report_to(self, folder: Path) -> None:
        """A fresh signed report on the stick (the newest journal entries), if it is writable."""
        from agent.observe.report import signed_report
        from airlock.files import PartialFile, open_dir_on_medium

        target = folder / REPORTS_DIR / f"{self.config.device_id}.report.json"
        try:
            data = signed_report(self.layout, since="all", remember=False)
            # The folder on the stick is opened without following a link (one planted there
            # would have root write the report anywhere), and the report is written into
            # that descriptor exclusively: a link at its name is replaced, never written through.
            reports = open_dir_on_medium(folder, REPORTS_DIR, create=True)
            try:
                with PartialFile(target, dir_fd=reports) as partial:
                    partial.file.write(data)
                    partial.publish()
            finally:
                os.close(reports)
        except Exception as e:  # the stick may be full, gone or read-only: the install stands
            self.log("report-not-written", path=str(target), reason=str(e)[:200])
            return
        self.log("report-written", path=str(target), bytes=len(data))

    # -- champion and challenger ---------------------------------------------
    def shadow_run(self) -> None:
        """The staged challenger compared again on fresh samples; promoted when it has earned it."""
        from agent.challenger import ready_to_promote, rerun

        self.next_shadow = time.monotonic() + self.options.shadow_every_s
        with self.locked("shadowing") as held:
            if not held or (run := rerun(self.layout)) is None:
                return
            self.log("shadow-run", **run)
            why = ready_to_promote(self.layout, self.options.auto_promote)
            if self.options.auto_promote and why:
                from agent.promote import promote

                try:
                    result = promote(self.layout, reason=why)
                except HealthCheckError as e:
                    self.log("promote-failed", release=run["release"], reason=str(e))
                    return
                self.log("promoted", release=result["release"], previous=result["previous"],
                         reason=why)

    # -- scheduled check -------------------------------------------------------
    def scheduled_check(self) -> None:
        from agent.rollback import check
        from agent.switch import read_link

        if read_link(self.layout, "current") is None:
            self.next_check = time.monotonic() + self.options.check_every_s
            return
        with self.locked("checking") as held:
            if not held:
                return
            self.next_check = time.monotonic() + self.options.check_every_s
            start = time.monotonic()
            try:
                result = check(self.layout, rollback_on_failure=self.options.revert)
            except HealthCheckError as e:
                self.observed.checks["failed"] += 1
                self.log("check-result", ok=False, reason=str(e), reverted=self.options.revert,
                         seconds=round(time.monotonic() - start, 3))
            except PreconditionError as e:
                self.log("check-skipped", reason=str(e))
            else:
                self.observed.checks["ok"] += 1
                self.log("check-result", ok=True, release=result["release"],
                         seconds=round(time.monotonic() - start, 3))

    # -- confirm or revert -----------------------------------------------------
    def hold_deadline(self) -> None:
        """A held install whose deadline passed goes back (``agent.hold``), checked each poll."""
        from agent.hold import held
        from agent.rollback import enforce_hold

        hold = held(self.layout)
        if hold is not None and time.time() < hold["deadline"]:
            return  # cheap: no lock taken while the hold runs
        if hold is None and not self.layout.hold.exists():
            return
        with self.locked("reverting a hold", revert_hold=False) as got:
            if got and (done := enforce_hold(self.layout)) is not None:
                self.log("hold-expired", **done)

    # -- drift -----------------------------------------------------------------
    def update_drift(self) -> None:
        try:
            self.observed.inputs = self.contracts.update()
        except Exception as e:  # counted for people to look at; never stops the loop
            self.log("input-contract-error", reason=str(e)[:200])
        try:
            drift = self.drift.update()
        except Exception as e:  # drift is advice; it never stops the loop
            self.log("drift-error", reason=str(e)[:200])
            return
        self.observed.drift = drift
        rid = drift.get("release") or ""
        over = {(rid, m) for m, d in drift["models"].items() if d.get("warn")}
        for rid_, model in sorted(over - self.warned):
            d = drift["models"][model]
            self.log("drift-warning", release=rid_, model=model, psi=d["psi"],
                     threshold=d["threshold"], rows=d["rows"])
            self._journal("drift-warning", release=rid_, model=model, psi=d["psi"],
                          threshold=d["threshold"], rows=d["rows"])
        for rid_, model in sorted(self.warned - over):
            self.log("drift-cleared", release=rid_, model=model)
        self.warned = over

    def _journal(self, event: str, **fields: Any) -> None:
        """A journal line, under the lock (the hash chain needs one writer at a time)."""
        with contextlib.suppress(LockedError, OSError), AgentLock(self.layout.lock,
                                                                  wait=_LOCK_WAIT_S):
            Journal(self.layout.journal).append(event, **fields)

    # -- HTTP --------------------------------------------------------------------
    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _AgentHTTPHandler(BaseHTTPRequestHandler):
            server_version = "airlock-agent"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every 15 s would drown the event log

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Cache-Control", "no-store")
                if content_type.startswith("text/html"):
                    # The page's own policy, also as a header: it loads and runs nothing.
                    self.send_header("Content-Security-Policy", _PAGE_POLICY)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    code, body, ctype = server.route(path)
                except Exception as e:  # a scrape must never take serve down
                    code, ctype = 500, "text/plain; charset=utf-8"
                    body = f"error: {type(e).__name__}: {str(e)[:200]}\n".encode()
                self._send(code, body, ctype)

            do_HEAD = do_GET

        return _AgentHTTPHandler

    def route(self, path: str) -> tuple[int, bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if path == "/metrics":
            return 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
        if path == "/healthz":
            stale = time.monotonic() - self.heartbeat > max(60.0, 5 * self.options.poll_s)
            ok = not stale or self.busy is not None
            body = {"ok": ok, "busy": self.busy, "stopping": self.stop.is_set(),
                    "uptime_s": round(time.monotonic() - self.started, 1)}
            return (200 if ok else 503), (json.dumps(body) + "\n").encode(), "application/json"
        if path == "/status":
            from agent.observe.status import status

            body_s = json.dumps(status(self.layout, serving=True), indent=2, sort_keys=True,
                                default=str)
            return 200, (body_s + "\n").encode(), "application/json"
        if path == "/":
            from agent.observe.statuspage import status_page

            page = status_page(self.layout, watch=self.options.watch)
            return 200, page.encode(), "text/html; charset=utf-8"
        return 404, b"not found\n", "text/plain; charset=utf-8"


def _refresh_facts(layout: Layout, log: EventLog) -> None:
    """Each start probes the device again (a device from before facts existed gets them now);
    a read-only or full ROOT keeps the facts it has, said in the log."""
    from agent.facts import refresh

    try:
        refresh(layout)
    except (OSError, AirlockError) as e:
        log("facts-not-refreshed", reason=str(e)[:200])


def serve(layout: Layout, options: ServeOptions) -> None:
    """Run until SIGTERM or SIGINT; see the module docstring."""
    one = AgentLock(layout.serve_lock)  # two loops on one ROOT would race for every drop
    try:
        one.__enter__()
    except LockedError as e:
        raise LockedError(str(e).replace("agent lock", "serve lock")
                          .replace("wait for it to finish and retry",
                                   "serve already runs on this ROOT")) from None
    log = EventLog(options.log)
    _refresh_facts(layout, log)
    state = _Server(layout, options, log)
    try:
        httpd = BoundedHTTPServer((options.host, options.port), state.handler())
    except OSError as e:
        log.close()
        one.__exit__(None, None, None)
        raise PreconditionError(f"cannot listen on {options.host}:{options.port}: "
                                f"{e.strerror}") from None
    http_thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    http_thread.start()
    try:
        relay = start_relay(layout, options.relay) if options.relay else None
    except PreconditionError:
        httpd.shutdown()
        httpd.server_close()
        log.close()
        one.__exit__(None, None, None)
        raise
    old = {s: signal.signal(s, state.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    log("serve-started", pid=os.getpid(), listen=f"{options.host}:{httpd.server_port}",
        watch=[str(d) for d in options.watch], check_every_s=options.check_every_s,
        revert_on_failed_check=options.revert, device_id=state.config.device_id,
        relay=(f"{options.relay.host}:{relay.server_port}" if options.relay and relay else None))
    try:
        state.run()
    except _Abort:
        pass  # the install undid itself on the way out
    finally:
        httpd.shutdown()
        httpd.server_close()
        if relay is not None:
            relay.shutdown()
            relay.server_close()
        for s, h in old.items():
            signal.signal(s, h)
        log("serve-stopped", pid=os.getpid())
        log.close()
        one.__exit__(None, None, None)
