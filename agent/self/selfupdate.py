"""The agent replacing itself: a new version beside the running one, checked, switched, or undone.

An agent installed from a kit lives under PREFIX (default ``/opt/airlock``)::

    PREFIX/agents/VERSION-ID/   one venv per installed kit; airlock-kit.json inside marks it whole
    PREFIX/current, previous    symlinks "agents/VERSION-ID", replaced by atomic rename
    PREFIX/bin/airlock-agent    symlink to current/bin/airlock-agent: the one entry point
    PREFIX/update.json          the switch in progress and the links to put back
    PREFIX/staging/             kits being unpacked, agents being removed; emptied by recovery
    PREFIX/lock                 flock(2) of the one process changing PREFIX

Two ways in, one transaction:

* ``install.sh`` builds the new venv and runs the new agent's ``self-install``
  (:func:`self_install`);
* ``airlock-agent install`` of a release that carries a kit for this device
  (``agent.kits`` in the signed release) calls :func:`update_from_release`
  once the release itself is committed: the running agent unpacks the kit
  from its store blob, checks ``kit.json`` against the device's trust root
  with python-tuf and builds the new venv with pip, offline.

Then, as for a release: the record ``update.json`` is written; the new agent
checks itself against the live ROOT without changing it (``--version``,
``fsck --read-only``, ``status``); ``current`` is switched atomically; the
new agent is started once through the entry point (its *first start*); the
newest accepted agent version is recorded (``ROOT/trust/agent.json``,
anti-rollback) and the record removed (the commit point). A failed check or
first start puts the links back (exit 4); a kill -9 anywhere before the
commit is undone by the next agent start (:func:`recover_agent`), which
journals it like any interrupted operation::

    result = update_from_release(layout, "vision-7")   # None: the release carries no kit
    result["updated"], result["agent"], result.get("reason")

A release whose kit for this device is older than the agent the device
accepted is refused before any blob is read (:func:`check_release_kit`,
exit 3), as an older release sequence is.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.faults import crash_point
from agent.journal import Journal
from agent.layout import Layout
from agent.lock import AgentLock
from agent.self.identity import agent_home, running_agent_id
from airlock.console import Progress, no_progress
from airlock.errors import (
    AirlockError,
    FormatError,
    HealthCheckError,
    LockedError,
)
from airlock.files import (
    fsync_dir,
    read_json,
    remove_tree,
    replace_symlink,
    write_atomic,
    write_json,
)
from airlock.limits import SELF_CHECK_TIMEOUT_S
from keys import kitverify
from keys.kitverify import MARKER, KitDocument, KitError, version_key

__all__ = [
    "AgentHome",
    "agent_update_pending",
    "may_migrate",
    "recover_agent",
    "self_check",
]

ID = re.compile(r"^[0-9][0-9.]{0,59}-[0-9a-f]{12}\Z")
# What a checked agent sees of the environment: nothing the caller set (no
# PYTHONPATH, no LD_PRELOAD), a fixed PATH and working directory.
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNIT = "airlock-agent.service"
#: ``AIRLOCK_KIT_NO_COMPILE=1``: pip installs a kit without byte-compiling it (install.sh
#: reads it too). Faster; Python compiles what the agent imports at its first start
#: instead, when PREFIX is writable. The tests use it: compiling is most of an install.
NO_COMPILE = "AIRLOCK_KIT_NO_COMPILE"


class AgentHome:
    """PREFIX of kit-installed agents: paths, the two links, the entry point."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix.absolute()
        self.agents = self.prefix / "agents"
        self.current = self.prefix / "current"
        self.previous = self.prefix / "previous"
        self.entry = self.prefix / "bin" / "airlock-agent"
        self.record = self.prefix / "update.json"
        self.staging = self.prefix / "staging"
        self.lock = self.prefix / "lock"

    def agent_dir(self, agent_id: str) -> Path:
        if not ID.match(agent_id):
            raise FormatError(f"{agent_id!r} is not an agent id (VERSION-DIGEST)")
        return self.agents / agent_id

    def link(self, which: str) -> Path:
        return {"current": self.current, "previous": self.previous}[which]

    def read_link(self, which: str) -> str | None:
        """The agent id ``current``/``previous`` points to, if it is an agent directory."""
        try:
            target = os.readlink(self.link(which))
        except OSError:
            return None
        head, _, agent_id = target.partition("/")
        ok = head == "agents" and ID.match(agent_id) and (self.agents / agent_id).is_dir()
        return agent_id if ok else None

    def set_link(self, which: str, agent_id: str | None) -> None:
        path = self.link(which)
        if agent_id is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        self.agent_dir(agent_id)  # validates the id
        replace_symlink(path, f"agents/{agent_id}")

    def version_of(self, agent_id: str | None) -> str | None:
        if agent_id is None:
            return None
        raw = read_json_quiet(self.agent_dir(agent_id) / MARKER)
        try:
            return str(raw["signed"][kitverify.KIT_SECTION]["version"])
        except (KeyError, TypeError):
            return None

    def leftovers(self) -> bool:
        """An uncommitted switch, or work in ``staging/``, that only a crash leaves behind."""
        return self.record.exists() or (self.staging.is_dir() and any(self.staging.iterdir()))

    def ensure_entry(self) -> None:
        """PREFIX/bin/airlock-agent -> ../current/bin/airlock-agent (made once, never switched)."""
        self.entry.parent.mkdir(parents=True, exist_ok=True)
        want = "../current/bin/airlock-agent"
        with contextlib.suppress(OSError):
            if os.readlink(self.entry) == want:
                return
        replace_symlink(self.entry, want)


def read_json_quiet(path: Path) -> Any:
    """The parsed file, or None when it is absent or unreadable."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


@dataclass
class Update:
    """The record of a switch in progress (``PREFIX/update.json``); removing it commits."""

    op: str  # "install" (install.sh) | "update" (from a release)
    to: str
    version: str
    restore_current: str | None
    restore_previous: str | None
    created: bool = False  # the new agent's directory was made by this operation
    phase: str = "started"
    release: str | None = None

    def save(self, home: AgentHome) -> None:
        write_json(home.record, asdict(self))

    @classmethod
    def pending(cls, home: AgentHome) -> Update | None:
        raw = read_json_quiet(home.record)
        if raw is None and not home.record.exists():
            return None
        if not isinstance(raw, dict):
            raw = {}
        try:
            return cls(str(raw.get("op", "unknown")), str(raw.get("to", "")),
                       str(raw.get("version", "?")), raw.get("restore_current"),
                       raw.get("restore_previous"), bool(raw.get("created")),
                       str(raw.get("phase", "started")), raw.get("release"))
        except (TypeError, ValueError):
            return cls("unknown", "", "?", None, None)

    def step(self, home: AgentHome, phase: str, *, created: bool | None = None) -> None:
        self.phase = phase
        if created is not None:
            self.created = created
        self.save(home)


class Failed(Exception):
    def __init__(self, phase: str, reason: str) -> None:
        super().__init__(reason)
        self.phase, self.reason = phase, reason


@dataclass
class Run:
    """Who is switching PREFIX, and the ROOT (if any) whose journal and state it touches."""

    home: AgentHome
    layout: Layout | None
    op: str
    release: str | None = None
    progress: Progress = no_progress

    def step(self, tx: Update, phase: str, *, created: bool | None = None) -> None:
        """Record the phase (for recovery) and say it (for a person watching)."""
        tx.step(self.home, phase, created=created)
        self.progress(f"agent {tx.version}: {phase}", 1, 1)

    def log(self, event: str, **fields: Any) -> None:
        if self.layout is not None and self.layout.is_initialised():
            Journal(self.layout.journal).append(event, **fields)


# -- checks ------------------------------------------------------------------------------


def scrubbed_env() -> dict[str, str]:
    return {"PATH": PATH, "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/")}


def _run_checked(exe: Path, args: list[str], cwd: Path) -> tuple[int, str, str]:
    try:
        p = subprocess.run([str(exe), *args], capture_output=True, text=True, errors="replace",
                           env=scrubbed_env(), cwd=cwd, timeout=SELF_CHECK_TIMEOUT_S,
                           stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise Failed("self-check", f"'{exe.name} {' '.join(args)}' did not finish within "
                      f"{SELF_CHECK_TIMEOUT_S:g} s") from None
    except OSError as e:
        raise Failed("self-check", f"cannot run {exe}: {e.strerror}") from None
    return p.returncode, p.stdout, p.stderr


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _ask(exe: Path, args: list[str], cwd: Path, phase: str, what: str,
         field: tuple[str, str] | None = None) -> Any:
    """``exe ARGS --json`` must exit 0; then its ``field`` (key, the word for it), if asked."""
    rc, out, err = _run_checked(exe, [*args, "--json"], cwd)
    if rc != 0:
        raise Failed(phase, f"'{what}' exited {rc}: {last_line(err)}")
    if field is None:
        return None
    key, word = field
    try:
        return json.loads(out)[key]
    except (ValueError, KeyError, TypeError):
        raise Failed(phase, f"'{what} --json' printed no {word}") from None


def self_check(exe: Path, version: str, layout: Layout | None, phase: str = "self-check") -> None:
    """Run the agent at ``exe`` as a user would; raise Failed naming what went wrong.

    ``--version`` must name ``version``; on an initialised ROOT, ``fsck
    --read-only`` must find it consistent and ``status`` must read it (neither
    changes it nor takes its lock, which the caller holds).
    """
    cwd = layout.root if layout is not None and layout.root.is_dir() else Path("/")
    try:
        said = _ask(exe, ["--version"], cwd, phase, "--version", ("version", "version"))
        if said != version:
            raise Failed(phase, f"'--version' says {str(said)[:40]}, the kit says {version}")
        if layout is None or not layout.is_initialised():
            return
        root = ["--root", str(layout.root)]
        _ask(exe, [*root, "fsck", "--read-only"], cwd, phase, "fsck --read-only")
        device = _ask(exe, [*root, "status"], cwd, phase, "status", ("device_id", "device"))
        if device != layout.load_config().device_id:
            raise Failed(phase, f"'status' reads device {str(device)[:40]}, not this one")
    except Failed as f:
        raise Failed(phase, f.reason) from None


# -- the transaction ------------------------------------------------------------------------


def undo(run: Run, tx: Update) -> None:
    """Put the links back as ``tx`` found them, drop what it made; then commit it."""
    home = run.home
    home.set_link("current", tx.restore_current)
    home.set_link("previous", tx.restore_previous)
    keep = {tx.restore_current, tx.restore_previous, running_agent_id()}
    if tx.created and tx.to not in keep:
        with contextlib.suppress(FormatError, OSError):
            remove_tree(home.agent_dir(tx.to), home.staging)
    clear_staging(home)
    with contextlib.suppress(FileNotFoundError):
        home.record.unlink()
    fsync_dir(home.prefix)


def clear_staging(home: AgentHome) -> None:
    if home.staging.is_dir():
        shutil.rmtree(home.staging, ignore_errors=True)


def prune(home: AgentHome) -> list[str]:
    """Remove agents that are neither current, previous nor running (after a commit)."""
    keep = {home.read_link("current"), home.read_link("previous"), running_agent_id()}
    removed = []
    if home.agents.is_dir():
        for d in sorted(home.agents.iterdir()):
            if d.name not in keep:
                remove_tree(d, home.staging)
                removed.append(d.name)
    clear_staging(home)
    return removed


def record_accepted(layout: Layout | None, version: str, agent_id: str) -> None:
    """Anti-rollback: remember the newest agent version this device accepted."""
    if layout is None or not layout.is_initialised():
        return
    raw = read_json_quiet(layout.agent_record)
    old = raw.get("version") if isinstance(raw, dict) else None
    with contextlib.suppress(KitError, TypeError):
        if old is not None and version_key(str(old)) >= version_key(version):
            return
    write_json(layout.agent_record, {"version": version, "agent": agent_id})


def write_marker(agent_dir: Path, kit_json: bytes) -> None:
    marker = agent_dir / MARKER
    if not marker.exists() or marker.read_bytes() != kit_json:
        write_atomic(marker, kit_json)


def transact(run: Run, new_id: str, kit: KitDocument, kit_json: bytes,
              build: Callable[[Update], None] | None) -> dict[str, Any]:
    home = run.home
    old = home.read_link("current")
    old_version = home.version_of(old)
    tx = Update(run.op, new_id, kit.version, old, home.read_link("previous"),
                 release=run.release)
    tx.save(home)
    run.log("agent-update-started", agent=new_id, version=kit.version, previous=old,
            op=run.op, release=run.release)
    crash_point("agent-update-started")
    try:
        if build is not None:
            build(tx)
        write_marker(home.agent_dir(new_id), kit_json)
        run.step(tx, "self-check")
        self_check(home.agent_dir(new_id) / "bin" / "airlock-agent", kit.version, run.layout)
        crash_point("agent-before-switch")
        run.step(tx, "switching")
        home.set_link("previous", old)
        home.set_link("current", new_id)
        home.ensure_entry()
        crash_point("agent-after-switch")
        run.step(tx, "first-start")
        self_check(home.entry, kit.version, run.layout, phase="first start")
        crash_point("agent-before-commit")
        record_accepted(run.layout, kit.version, new_id)
        run.log("agent-updated", agent=new_id, version=kit.version, previous=old,
                previous_version=old_version, op=run.op, release=run.release)
        home.record.unlink()
        fsync_dir(home.prefix)
        crash_point("agent-after-commit")
    except Failed as f:
        undo(run, tx)
        run.log("agent-update-failed", agent=new_id, version=kit.version, phase=f.phase,
                reason=f.reason, active=old)
        raise HealthCheckError(
            f"agent {kit.version} failed its {f.phase}: {f.reason}; "
            + (f"agent {old_version or old} is active again" if old else "no agent is active")
        ) from None
    except (AirlockError, OSError, subprocess.SubprocessError) as e:
        undo(run, tx)
        run.log("agent-update-failed", agent=new_id, version=kit.version, phase=tx.phase,
                reason=str(e)[:300] or type(e).__name__, active=old)
        raise
    removed = prune(home)
    return {"updated": True, "agent": new_id, "version": kit.version, "previous": old,
            "previous_version": old_version, "removed": removed, "prefix": str(home.prefix)}


# -- recovery -------------------------------------------------------------------------------


def agent_update_pending() -> bool:
    """A cheap look: did a crash leave an agent switch, or its unpacked kit, in PREFIX?"""
    home = agent_home()
    return home is not None and AgentHome(home).leftovers()


def recover_home(home: AgentHome, layout: Layout | None) -> list[str]:
    """Undo an uncommitted switch; the caller holds ``home.lock``."""
    tx = Update.pending(home)
    if tx is None:
        return []
    run = Run(home, layout, tx.op, tx.release)
    undo(run, tx)
    active = home.version_of(tx.restore_current) or tx.restore_current or "none"
    what = (f"agent {tx.op} to {tx.version} was interrupted in phase '{tx.phase}'; "
            f"it counts as failed; agent {active} is active")
    run.log("recovered", op="agent-" + tx.op, agent=tx.to or None, phase=tx.phase,
            active=tx.restore_current, reason=what)
    return [what]


def recover_agent(layout: Layout) -> list[str]:
    """Part of ``agent.recovery.recover``: undo an agent switch a crash left behind."""
    home = agent_home()
    if home is None or not AgentHome(home).leftovers():
        return []
    h = AgentHome(home)
    try:
        with AgentLock(h.lock):
            done = recover_home(h, layout)
            if h.staging.is_dir():  # a kill after the commit, before the cleanup
                clear_staging(h)
                done.append(f"discarded unfinished work in {h.staging}")
            return done
    except LockedError:
        return []  # someone is switching right now; it is not a crash


def may_migrate() -> bool:
    """Only the committed current agent moves ROOT's format forward (agent.rootformat)."""
    home = agent_home()
    if home is None:
        return True
    h = AgentHome(home)
    return not h.record.exists() and h.read_link("current") == running_agent_id()
