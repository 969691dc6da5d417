"""Canary waves over SSH: a bundle goes to a site's devices a few at a time, and back on failure.

``airlock fleet rollout BUNDLE --inventory site.yml --known-hosts kh --waves 1,25%,100%``::

    plan = Plan(Path("vision-1.3.0.airlock"), site.select(ring="canary"),
                Path("site/known_hosts"), waves=parse_waves("1,25%,100%"), max_failures="0")
    report = roll_out(plan, on_device=print_row)
    report.halted, report.exit_code          # True, 4 when the canaries failed

Each device gets one SSH connection (``bundler.fleet.ssh``: strict host keys) that
carries everything: ``airlock-agent status --json`` for the release before,
the resumable copy of ``bundler.fleet.push`` (a file already there is hashed and
not sent), ``airlock-agent install FILE --json``, and status again for the
release after. The agent does the checking and the health check; a failed
health check has already put that device back (its exit 4).

Waves are cumulative sizes (``1`` device, then up to ``25%``, then the
rest); within a wave ``--parallel`` devices move at once. After each wave
the failures so far are compared with ``--max-failures`` (a count, or a
percentage of the devices tried): over the budget, the rollout halts, and
every device it moved is put back with ``airlock-agent rollback`` unless
``revert_on_halt`` is off. ``dry_run`` connects and asks each device what
it would do (status, free space, ring, sequence) without copying anything.
"""

from __future__ import annotations

import json
import math
import posixpath
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from airlock.console import human_size
from airlock.errors import AirlockError, UnreachableError, UsageError
from airlock.format.bundle import BundleReader
from airlock.format.parts import open_media
from bundler.fleet.ansible_inventory import Device
from bundler.fleet.device_status import DeviceStatus, device_status
from bundler.fleet.push import FileSent, files_of, send_files
from bundler.fleet.ssh import Login, connect, run
from keys.metadata import parse_metadata

__all__ = ["DeviceResult", "Plan", "RolloutReport", "bundle_facts", "parse_budget",
           "parse_waves", "roll_out"]

#: ``on_device(result)``: a device finished (or was put back); the command line prints a row.
DeviceCallback = Callable[["DeviceResult"], None]


def parse_waves(text: str) -> list[str]:
    """``1,25%,100%`` as a list of cumulative sizes; each a count or a percentage."""
    waves = [w.strip() for w in text.split(",") if w.strip()]
    for w in waves:
        n = w[:-1] if w.endswith("%") else w
        if not n.isdigit() or int(n) == 0 or (w.endswith("%") and int(n) > 100):
            raise UsageError(f"--waves: {w!r} is not a device count or a percentage 1-100%")
    if not waves:
        raise UsageError("--waves names no wave")
    return waves


def parse_budget(text: str) -> str:
    """``--max-failures``: ``N`` devices or ``P%`` of those tried."""
    n = text[:-1] if text.endswith("%") else text
    if not n.isdigit() or (text.endswith("%") and int(n) > 100):
        raise UsageError(f"--max-failures: {text!r} is not a count or a percentage 0-100%")
    return text


def _size(spec: str, total: int) -> int:
    if spec.endswith("%"):
        return max(1, math.ceil(total * int(spec[:-1]) / 100))
    return int(spec)


def split_waves(devices: Sequence[Device], waves: Sequence[str]) -> list[list[Device]]:
    """The devices of each wave; the last wave takes whatever the sizes left."""
    out: list[list[Device]] = []
    done = 0
    for spec in waves:
        upto = min(len(devices), max(done, _size(spec, len(devices))))
        if upto > done:
            out.append(list(devices[done:upto]))
            done = upto
    if done < len(devices):
        out.append(list(devices[done:]))
    return out


def _over_budget(budget: str, failed: int, tried: int) -> bool:
    if budget.endswith("%"):
        return failed * 100 > int(budget[:-1]) * tried
    return failed > int(budget)


@dataclass(frozen=True)
class BundleFacts:
    """What the bundle says about itself (unverified: the devices verify it)."""

    name: str
    version: str
    sequence: int
    rings: tuple[str, ...]
    size: int
    flags: bool = False  # a flags bundle: applied, no release moves

    @property
    def release_id(self) -> str:
        return f"{'flags:' if self.flags else ''}{self.name}-{self.sequence}"


def bundle_facts(bundle: Path) -> BundleFacts:
    from tuf.api.metadata import Targets

    from keys.flags import read_flags
    from keys.metadata import kind_of
    from keys.release import Release

    f, _ = open_media(str(bundle))
    with f:
        head = BundleReader(f).head()
    size = sum(p.stat().st_size for p in files_of(bundle))
    md = parse_metadata(head.release_json, Targets, "bundle metadata")
    if kind_of(md).is_flags():
        flags = read_flags(md)
        return BundleFacts(flags.name, "", flags.sequence, flags.rings, size, flags=True)
    r = Release.from_metadata(md)
    return BundleFacts(r.name, r.version, r.sequence, tuple(r.rings), size)


@dataclass
class Plan:
    bundle: Path
    devices: list[Device]
    known_hosts: Path
    waves: list[str] = field(default_factory=lambda: ["1", "25%", "100%"])
    max_failures: str = "0"
    parallel: int = 1
    accept_new_hosts: bool = False
    revert_on_halt: bool = True
    dry_run: bool = False
    connect_timeout: float = 15.0
    command_timeout: float = 900.0
    hold: float | None = None  # --confirm-after: install held, committed once the wave is good
    via: str | None = None  # --via RELAY: devices pull /bundles/ID.airlock from the site relay


@dataclass
class DeviceResult:
    device: str
    address: str
    ring: str | None
    wave: int
    before: str | None = None
    after: str | None = None
    result: str = "pending"  # installed, unchanged, failed, reverted, would-install, …
    exit_code: int = 0
    reason: str | None = None
    seconds: float = 0.0
    ssh_seconds: float = 0.0
    push_seconds: float = 0.0
    install_seconds: float = 0.0
    bytes_sent: int = 0
    moved: bool = False  # this rollout changed the device's active release
    held_until: str | None = None  # --confirm-after: when the device reverts unless committed
    committed: bool = False
    recorded_host_keys: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class RolloutReport:
    bundle: str
    release: str
    dry_run: bool
    waves: list[list[str]]
    devices: list[DeviceResult]
    halted: bool = False
    halted_after_wave: int | None = None
    reverted: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.halted:
            return 4
        failed = [d for d in self.devices if not d.ok]
        return failed[0].exit_code if failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "release": self.release, "dry_run": self.dry_run,
                "waves": self.waves, "halted": self.halted,
                "halted_after_wave": self.halted_after_wave, "reverted": self.reverted,
                "seconds": round(self.seconds, 3), "ok": self.exit_code == 0,
                "exit_code": self.exit_code, "devices": [d.to_dict() for d in self.devices]}


class _Remote:
    """The agent on one device, driven over one SSH connection."""

    def __init__(self, client: paramiko.SSHClient, device: Device, timeout: float) -> None:
        self.client, self.device, self.timeout = client, device, timeout

    def agent(self, *args: str) -> tuple[int, dict[str, Any] | None, str]:
        """``AGENT --root ROOT ARGS --json``: exit status, parsed output, last stderr line."""
        command = (f"{self.device.agent} --root {shlex.quote(self.device.root)} "
                   + " ".join(shlex.quote(a) for a in (*args, "--json")))
        status, out, err = run(self.client, command, self.timeout, what="the agent")
        if status < 0:
            raise UnreachableError("connection lost while running the agent")
        lines = [x for x in err.decode(errors="replace").splitlines() if x.strip()]
        why = lines[-1].strip() if lines else ""
        for prefix in ("airlock-agent: error: ", "airlock-agent: "):
            why = why.removeprefix(prefix)
        if status == 127 or "command not found" in why or "No module named" in why:
            why = f"no agent: '{self.device.agent}' is not a command on the device"
            status = 5
        try:
            doc = json.loads(out) if out.strip() else None
        except ValueError:
            doc = None
        return status, doc if isinstance(doc, dict) else None, why


def _release_id(status: DeviceStatus | None) -> str | None:
    return None if status is None else status.release


class _Rollout:
    def __init__(self, plan: Plan, facts: BundleFacts, on_device: DeviceCallback | None) -> None:
        self.plan, self.facts, self.on_device = plan, facts, on_device
        self.files = files_of(plan.bundle)
        self._lock = threading.Lock()

    def login(self, device: Device) -> Login:
        return Login(device.user, device.identity, self.plan.known_hosts,
                     accept_new=self.plan.accept_new_hosts, timeout=self.plan.connect_timeout)

    def report(self, r: DeviceResult) -> None:
        if self.on_device:
            with self._lock:  # rows from parallel devices must not interleave
                self.on_device(r)

    def move(self, device: Device, wave: int) -> DeviceResult:
        r = DeviceResult(device.name, str(device.target), device.ring, wave)
        start = time.monotonic()
        try:
            with self._connected(device, r) as remote:
                self._work(remote, r)
        except AirlockError as e:
            r.result, r.exit_code, r.reason = "failed", e.exit_code, str(e)
        except (OSError, EOFError, paramiko.SSHException) as e:
            lost = UnreachableError(f"connection to {device.target} lost: {e or type(e).__name__}")
            r.result, r.exit_code, r.reason = "failed", lost.exit_code, str(lost)
        r.seconds = round(time.monotonic() - start, 3)
        self.report(r)
        return r

    def _connected(self, device: Device, r: DeviceResult) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def cm() -> Any:
            t = time.monotonic()
            with connect(device.target, self.login(device), r.recorded_host_keys) as client:
                r.ssh_seconds = round(time.monotonic() - t, 3)
                yield _Remote(client, device, self.plan.command_timeout)

        return cm()

    def _status(self, remote: _Remote) -> DeviceStatus:
        code, doc, why = remote.agent("status")
        if code != 0 or doc is None:
            raise _Failed(code or 5, f"status: {why or 'no answer'}")
        return device_status(doc)  # odd types: this device's row fails (exit 3), not the run

    def _work(self, remote: _Remote, r: DeviceResult) -> None:
        before = self._status(remote)
        r.before = _release_id(before)
        if self.plan.dry_run:
            self._dry(remote.device, before, r)
            return
        target = self._deliver(remote, r)
        t = time.monotonic()
        args = ["install", target]
        if self.plan.hold is not None:
            args += ["--hold", str(self.plan.hold)]
        code, doc, why = remote.agent(*args)
        r.install_seconds = round(time.monotonic() - t, 3)
        if code == 0 and doc is not None and isinstance(doc.get("active"), str):
            r.after = doc["active"]  # the agent said where it stands: no second status
        else:
            r.after = _release_id(self._status(remote))
        r.moved = r.after != r.before
        if code != 0:
            r.result, r.exit_code, r.reason = "failed", code, why or f"agent exit {code}"
            if code == 4:
                r.result = "health-failed"
        elif self.facts.flags:
            r.result, r.moved = "flags-applied", True  # put back with 'flags rollback'
        else:
            r.result = "installed" if r.moved else "unchanged"
            if doc is not None and not doc.get("installed", True):
                r.reason = str(doc.get("message") or "")
            if doc is not None and isinstance(doc.get("held_until"), str):
                r.held_until = doc["held_until"]

    def _deliver(self, remote: _Remote, r: DeviceResult) -> str:
        """What the device installs: the file pushed over SFTP, or the relay's URL (``--via``)."""
        if self.plan.via is not None and self.facts.flags:
            raise _Failed(2, "--via serves releases, not flags bundles: push this one")
        if self.plan.via is not None:
            # The device pulls from the site relay and verifies it as from a stick.
            return f"{self.plan.via.rstrip('/')}/bundles/{self.facts.release_id}.airlock"
        t = time.monotonic()
        sent: list[FileSent] = []
        try:
            where = send_files(remote.client, self.files, remote.device.dest, sent, lambda n: None)
        finally:
            r.bytes_sent = sum(f.sent for f in sent)
            r.push_seconds = round(time.monotonic() - t, 3)
        if len(self.files) > 1:
            return posixpath.join(where, self.files[0].name)  # part001: the agent finds the rest
        return posixpath.join(where, self.files[-1].name)

    def _dry(self, device: Device, status: DeviceStatus, r: DeviceResult) -> None:
        facts = self.facts
        free = status.free_bytes
        seq = status.sequence_of(facts.name)
        ring = status.ring
        r.after = r.before
        r.checks = {"agent": "answers", "ring": ring, "free_bytes": free,
                    "active_sequence": seq, "bundle_sequence": facts.sequence}
        if status.damage:
            r.exit_code, r.reason = 5, "damaged agent root: " + status.damage
        elif isinstance(free, int) and free < 2 * facts.size:
            r.exit_code, r.reason = 5, (f"{human_size(free)} free, the bundle needs about "
                                        f"{human_size(2 * facts.size)}")
        elif facts.rings and ring not in facts.rings:
            r.exit_code, r.reason = 3, (f"the release is for rings {', '.join(facts.rings)}; "
                                        f"this device is in {ring or 'no ring'}")
        elif seq is not None and seq > facts.sequence:
            r.exit_code, r.reason = 3, (f"runs sequence {seq}; it would refuse the older "
                                        f"{facts.sequence}")
        if r.exit_code:
            r.result = "would-fail"
        elif r.before == facts.release_id:
            r.result = "already-active"
        else:
            # AFTER is where the device would stand: the target, as a real run would say.
            r.result, r.after = "would-install", facts.release_id

    def revert(self, r: DeviceResult, device: Device) -> None:
        """Put a device this rollout moved back on its release before (agent rollback)."""
        try:
            with self._connected(device, DeviceResult(device.name, "", None, r.wave)) as remote:
                code, _, why = (remote.agent("flags", "rollback", self.facts.name)
                                if self.facts.flags else remote.agent("rollback"))
                after = _release_id(self._status(remote))
        except (AirlockError, OSError, EOFError, paramiko.SSHException) as e:
            code, why, after = getattr(e, "exit_code", 5), str(e), r.after
        if code == 0 and (after == r.before or self.facts.flags):
            r.result, r.after, r.moved = "reverted", after, False
            r.reason = (r.reason + "; " if r.reason else "") + "put back: rollout halted"
        else:
            r.result = "revert-failed"
            r.exit_code = r.exit_code or (code or 4)
            r.reason = f"rollout halted and rollback failed: {why or f'now on {after}'}"
        self.report(r)


class _Failed(AirlockError):
    """The agent on a device answered with an error (its exit code is kept)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = code


def roll_out(plan: Plan, on_device: DeviceCallback | None = None,
             on_wave: Callable[[int, list[Device]], None] | None = None) -> RolloutReport:
    """Run ``plan`` wave by wave; never raises for one device's failure."""
    if not plan.devices:
        raise UsageError("no device matches the inventory, --ring and --limit")
    facts = bundle_facts(plan.bundle)
    job = _Rollout(plan, facts, on_device)
    waves = split_waves(plan.devices, plan.waves)
    report = RolloutReport(str(plan.bundle), facts.release_id, plan.dry_run,
                           [[d.name for d in w] for w in waves], [])
    start = time.monotonic()
    by_name = {d.name: d for d in plan.devices}
    with ThreadPoolExecutor(max_workers=max(1, plan.parallel)) as pool:
        for number, wave in enumerate(waves, 1):
            if on_wave:
                on_wave(number, wave)
            report.devices += list(pool.map(lambda d, n=number: job.move(d, n), wave))
            if plan.dry_run:
                continue
            failed = sum(1 for d in report.devices if not d.ok)
            if _over_budget(plan.max_failures, failed, len(report.devices)):
                report.halted, report.halted_after_wave = True, number
                break
            if plan.hold is not None:
                moved = [d for d in report.devices if d.wave == number and d.moved]
                list(pool.map(lambda d: _commit(job, d, by_name[d.device]), moved))
        if report.halted and plan.revert_on_halt:
            moved = [d for d in report.devices if d.moved]
            list(pool.map(lambda d: job.revert(d, by_name[d.device]), moved))
            report.reverted = [d.device for d in moved if d.result == "reverted"]
    report.seconds = time.monotonic() - start
    return report


def _commit(job: _Rollout, r: DeviceResult, device: Device) -> None:
    """A good wave under ``--confirm-after``: make a held install final (``--parallel`` at once)."""
    try:
        with job._connected(device, DeviceResult(r.device, "", None, 0)) as remote:
            code, _, why = remote.agent("commit")
    except (AirlockError, OSError, EOFError, paramiko.SSHException) as e:
        code, why = getattr(e, "exit_code", 5), str(e)
    if code != 0:
        r.reason = f"commit failed ({why}); the device reverts by itself at the deadline"
    else:
        r.committed = True
