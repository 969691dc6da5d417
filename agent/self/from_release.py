"""A release that carries an agent kit: the kit for this device, checked, built and switched to.

``airlock-agent install`` of a release whose signed ``agent.kits`` holds a kit
for this device's platform calls :func:`update_from_release` once the release
itself is committed (``agent.operations.install_run``); the kit is unpacked
from its store blob, ``kit.json`` checked against the device's trust root
with python-tuf, the new venv built with pip offline, then switched to by the
transaction of ``agent.self.selfupdate``::

    check_release_kit(layout, release)          # before any blob: an older kit is refused (exit 3)
    result = update_from_release(layout, "vision-7")   # None: the release carries no kit
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.faults import crash_point
from agent.journal import Journal
from agent.layout import Layout
from agent.lock import AgentLock
from agent.self.identity import agent_home, agent_version
from agent.self.selfupdate import (
    NO_COMPILE,
    PATH,
    AgentHome,
    Failed,
    Run,
    Update,
    clear_staging,
    last_line,
    read_json_quiet,
    recover_home,
    scrubbed_env,
    transact,
)
from airlock.console import Progress, no_progress
from airlock.errors import (
    FormatError,
    PreconditionError,
    RejectedError,
    RollbackError,
)
from airlock.files import (
    remove_tree,
)
from airlock.format.kitarchive import KitReader
from airlock.format.layout_check import FileInfo
from airlock.format.oci import hash_file
from airlock.limits import AGENT_VENV_TIMEOUT_S
from keys import kitverify
from keys.kit import verify_kit
from keys.kitverify import KitDocument, KitError, version_key
from keys.release import AgentKitEntry, Release

__all__ = ["check_release_kit", "kit_for_device", "update_from_release"]

def kit_for_device(release: Release) -> AgentKitEntry | None:
    """The kit of ``release`` for this device's platform and Python, if it carries one."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    for k in release.agent_kits:
        if k.platform == kitverify.host_platform() and k.python == python:
            return k
    return None


def accepted_versions(layout: Layout, *, running: bool = True) -> list[str]:
    """The running agent's version (with ``running``) and the newest the device accepted."""
    found = [agent_version()] if running else []
    raw = read_json_quiet(layout.agent_record)
    if isinstance(raw, dict) and isinstance(raw.get("version"), str):
        found.append(raw["version"])
    return [v for v in found if v != "unknown"]


def check_release_kit(layout: Layout, release: Release) -> None:
    """Anti-rollback, before any blob is read: no kit older than an agent already accepted."""
    entry = kit_for_device(release)
    if entry is None or agent_home() is None:
        return
    for v in accepted_versions(layout):
        with contextlib.suppress(KitError):
            if version_key(entry.version) < version_key(v):
                raise RollbackError(
                    f"release {release.id} carries agent kit {entry.version}, older than agent "
                    f"{v} already accepted on this device; rebuild it with a newer kit")


def _base_python() -> Path:
    """The interpreter the running agent's venv was made from (new venvs use the same)."""
    exact = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if exact.is_file():
        return exact
    found = shutil.which("python3", path=PATH)
    if found is None:
        raise PreconditionError("no python3 to make the new agent's venv with")
    return Path(found)


def _builder(run: Run, blob: Path, new_id: str, kit: KitDocument,
             kit_json: bytes) -> Callable[[Update], None]:
    home = run.home

    def build(tx: Update) -> None:
        run.step(tx, "unpacking")
        unpacked = home.staging / f"kit-{new_id}"
        clear_staging(home)
        unpacked.mkdir(parents=True)
        with blob.open("rb") as f:
            reader = KitReader(f)
            _, again = reader.head()
            if again != kit_json:
                raise FormatError("the agent kit changed while it was read; install again")
            reader.extract({p: FileInfo(n, h) for p, (n, h) in kit.files.items()}, unpacked)
        crash_point("agent-kit-unpacked")
        dest = home.agent_dir(new_id)
        run.step(tx, "venv", created=True)
        if dest.exists():
            remove_tree(dest, home.staging)
        home.agents.mkdir(parents=True, exist_ok=True)
        env = scrubbed_env()
        # The same two steps as the kit's install.sh, which a fresh device runs.
        subprocess.run([str(_base_python()), "-I", "-m", "venv", "--without-pip", str(dest)],
                       check=True, env=env, cwd="/", capture_output=True,
                       timeout=AGENT_VENV_TIMEOUT_S)
        crash_point("agent-mid-venv")
        p = subprocess.run(
            [str(dest / "bin" / "python"), "-s", "-E", str(unpacked / kit.installer / "pip"),
             "install", "--isolated", "--no-index", "--find-links", str(unpacked / "wheels"),
             "--require-hashes", "--only-binary=:all:", "--no-cache-dir",
             "--disable-pip-version-check", "--no-warn-script-location", "--quiet",
             "--no-compile" if os.environ.get(NO_COMPILE) == "1" else "--compile",
             "-r", str(unpacked / kit.requirements)],
            env=env, cwd="/", capture_output=True, text=True, errors="replace",
            timeout=AGENT_VENV_TIMEOUT_S, check=False)
        if p.returncode != 0:
            raise Failed("install", f"pip could not install the kit: {last_line(p.stderr)}")
        crash_point("agent-venv-built")

    return build


def update_from_release(layout: Layout, release_id: str, *,
                        progress: Progress = no_progress) -> dict[str, Any] | None:
    """After ``release_id`` was installed and committed: switch to the agent it carries.

    None when the release carries no kit; ``{"updated": False, "reason": …}``
    when it carries none for this device, the agent did not come from a kit,
    or the kit's agent is already running. The caller holds ROOT's lock.
    """
    release = layout.load_release(release_id)
    if not release.agent_kits:
        return None
    journal = Journal(layout.journal)
    entry = kit_for_device(release)
    prefix = agent_home()
    reason = None
    if entry is None:
        here = f"{kitverify.host_platform()} Python {sys.version_info.major}.{sys.version_info.minor}"
        reason = f"the release carries no agent kit for {here}"
    elif prefix is None:
        reason = ("this agent was installed with pip, not from a kit; install a kit with "
                  "install.sh to let releases update it")
    elif version_key(entry.version) <= version_key(agent_version()):
        return {"updated": False, "reason": f"agent {agent_version()} is already running",
                "version": agent_version()}
    if reason is not None or entry is None or prefix is None:
        journal.append("agent-kit-skipped", release=release_id, reason=reason)
        return {"updated": False, "reason": reason}
    home = AgentHome(prefix)
    blob = layout.blob(entry.blob)
    if hash_file(blob)[0] != entry.blob[7:]:
        raise RejectedError(f"the stored agent kit {entry.blob[:19]}… is damaged; run "
                            "'airlock-agent fsck --repair' and install the bundle again")
    with blob.open("rb") as f:
        _, kit_json = KitReader(f).head()
    kit = verify_kit(layout.load_trust(), kit_json)
    if (kit.version, kit.platform, kit.python) != (entry.version, entry.platform, entry.python):
        raise FormatError(f"agent kit {entry.file_name} holds {kit.version} for {kit.platform} "
                          f"Python {kit.python}, not what the release says")
    new_id = kitverify.kit_id(kit, kit_json)
    with AgentLock(home.lock):
        recover_home(home, layout)
        if home.read_link("current") == new_id:
            return {"updated": False, "reason": f"agent {new_id} is already current",
                    "agent": new_id}
        run = Run(home, layout, "update", release_id, progress)
        return transact(run, new_id, kit, kit_json, _builder(run, blob, new_id, kit, kit_json))
