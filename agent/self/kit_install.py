"""``install.sh``'s last step: the new agent links itself in, writes its unit, initialises ROOT.

The kit's ``install.sh`` builds a venv from the kit's wheels with pip and no
index, then runs that venv's ``airlock-agent self-install``, which lands here::

    self_install(kit_dir, Path("/opt/airlock"), layout, trust_file=Path("root.json"),
                 bin_dir=Path("/usr/local/bin"), systemd_dir=None,  # None: /etc/systemd/system
                 device_id="cam-7", ring=None, init=True, enable=False)

What it will not do silently: a ``--trust`` other than the root an initialised
ROOT trusts is taken only as that root's rotation (refused otherwise, naming both
files); a unit at ``SYSTEMD_DIR/airlock-agent.service`` it did not write is kept
as ``airlock-agent.service.orig-TIME`` before its own is written (and said so); a
``systemd_dir`` that was given and does not exist is a usage error. The caller
prints the next commands (:data:`NEXT`) or, with ``enable``, they run here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.journal import Journal
from agent.layout import Layout
from agent.lock import AgentLock
from agent.self.from_release import accepted_versions
from agent.self.selfupdate import (
    UNIT,
    AgentHome,
    Run,
    last_line,
    prune,
    record_accepted,
    recover_home,
    scrubbed_env,
    transact,
    write_marker,
)
from airlock.errors import (
    AirlockError,
    PreconditionError,
    RejectedError,
    RollbackError,
    UsageError,
)
from airlock.files import (
    replace_symlink,
    write_atomic,
)
from airlock.format.kitarchive import KIT_METADATA
from airlock.limits import SELF_CHECK_TIMEOUT_S
from keys import kitverify
from keys.kit import verify_kit
from keys.kitverify import KitError
from keys.trust import TrustRoot

__all__ = ["NEXT", "self_install"]

DEFAULT_SYSTEMD_DIR = Path("/etc/systemd/system")
#: The first line of every unit self-install writes: a unit without it is someone else's.
WRITTEN_BY = "# Written by airlock-agent self-install (the agent kit's install.sh)."
#: What starts the agent once its unit is in place (run by ``install.sh --enable``).
NEXT = (("systemctl", "daemon-reload"), ("systemctl", "enable", "--now", UNIT))

def _link_into(bin_dir: Path, home: AgentHome) -> Path:
    link = bin_dir / "airlock-agent"
    if link.exists() and not link.is_symlink():
        raise PreconditionError(f"{link} exists and is not a link; remove it (a pip-installed "
                                "agent?) or give --bin-dir")
    bin_dir.mkdir(parents=True, exist_ok=True)
    replace_symlink(link, str(home.entry))
    return link


def _install_unit(kit_dir: Path, systemd_dir: Path | None, home: AgentHome,
                  root: Path) -> tuple[Path | None, Path | None]:
    """The kit's systemd unit with this device's paths, and where a unit not ours was kept.

    The project's unit (packaging/airlock-agent.service) names the pip install's
    paths: ``ExecStart=/usr/local/bin/airlock-agent`` and
    ``Environment=AIRLOCK_ROOT=/var/lib/airlock``; they become PREFIX's entry point
    and ``--root``. ``@AIRLOCK_AGENT@`` and ``@AIRLOCK_ROOT@`` are filled in too.
    No unit without one in the kit, or without the default systemd directory.
    """
    source = kit_dir / "systemd" / UNIT
    target_dir = systemd_dir or DEFAULT_SYSTEMD_DIR
    if not source.is_file() or not target_dir.is_dir():
        return None, None
    text = (source.read_text().replace("@AIRLOCK_AGENT@", str(home.entry))
            .replace("@AIRLOCK_ROOT@", str(root)))
    text = re.sub(r"^ExecStart=\S*/airlock-agent(?=\s|$)", lambda _: f"ExecStart={home.entry}",
                  text, flags=re.M)
    text = re.sub(r"^Environment=AIRLOCK_ROOT=\S*$", lambda _: f"Environment=AIRLOCK_ROOT={root}",
                  text, flags=re.M)
    dest = target_dir / UNIT
    kept = None
    with contextlib.suppress(FileNotFoundError):
        if dest.is_symlink() or not dest.read_text(errors="replace").startswith(WRITTEN_BY):
            # Someone else's unit (a hand-written one, a package's): kept, never overwritten.
            kept = dest.with_name(f"{UNIT}.orig-{time.strftime('%Y%m%d%H%M%S')}")
            os.replace(dest, kept)
    write_atomic(dest, f"{WRITTEN_BY}\n{text}".encode())
    return dest, kept


def _enable() -> None:
    """``systemctl daemon-reload && systemctl enable --now airlock-agent.service``."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise PreconditionError("--enable: systemctl not found (no systemd here?); the agent "
                                "is installed, start it yourself")
    for command in NEXT:
        p = subprocess.run([systemctl, *command[1:]], capture_output=True, text=True,
                           errors="replace", check=False, timeout=SELF_CHECK_TIMEOUT_S,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise PreconditionError(f"the agent is installed, but '{' '.join(command)}' failed: "
                                    f"{last_line(p.stderr or p.stdout)}")


def _trust_of(layout: Layout, trust_file: Path | None) -> tuple[TrustRoot, bytes | None]:
    """The root to check the kit with, and the bytes of a rotation ``--trust`` brings."""
    given = None
    if trust_file is not None:
        try:
            given = trust_file.read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read trust root {trust_file}: {e.strerror}") from None
    if not layout.is_initialised():
        if given is None:
            raise UsageError("give --trust root.json: ROOT is not initialised yet")
        return TrustRoot.from_bytes(given), None
    trust = layout.load_trust()
    if given is None:
        return trust, None
    try:
        rotated = trust.rotate(given)
    except AirlockError as e:
        raise PreconditionError(
            f"{layout.root} already trusts another root ({layout.trust_root}, version "
            f"{trust.version}); --trust {trust_file} is not a rotation of it: {e}") from None
    return rotated, (given if rotated is not trust else None)


def self_install(kit_dir: Path, prefix: Path, layout: Layout, *, trust_file: Path | None,
                 bin_dir: Path, systemd_dir: Path | None, device_id: str | None,
                 ring: str | None, init: bool, enable: bool = False) -> dict[str, Any]:
    """What ``install.sh`` leaves to the new agent it has just put in its venv."""
    home = AgentHome(prefix)
    if systemd_dir is not None and not systemd_dir.is_dir():
        raise UsageError(f"--systemd-dir {systemd_dir} does not exist")
    try:
        kit_json = (kit_dir / KIT_METADATA).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {kit_dir / KIT_METADATA}: {e.strerror}") from None
    initialised = layout.is_initialised()
    trust, rotation = _trust_of(layout, trust_file)
    kit = verify_kit(trust, kit_json)
    try:
        kitverify.check_host(kit)
    except KitError as e:
        raise RejectedError(str(e)) from None
    new_id = kitverify.kit_id(kit, kit_json)
    if Path(sys.prefix).resolve() != home.agent_dir(new_id).resolve():
        raise UsageError(f"self-install runs from the agent it installs "
                         f"({home.agent_dir(new_id)}); run the kit's install.sh")
    home.prefix.mkdir(parents=True, exist_ok=True)
    root_lock = AgentLock(layout.lock) if initialised else contextlib.nullcontext()
    with root_lock, AgentLock(home.lock):
        recovered = recover_home(home, layout)
        accepted = [v for v in (home.version_of(home.read_link("current")),) if v]
        if initialised:
            accepted += accepted_versions(layout, running=False)
        try:
            kitverify.check_newer(kit, accepted)
        except KitError as e:
            raise RollbackError(str(e)) from None
        if home.read_link("current") == new_id:
            write_marker(home.agent_dir(new_id), kit_json)
            home.ensure_entry()
            result: dict[str, Any] = {"updated": False, "agent": new_id, "version": kit.version,
                                      "previous": home.read_link("previous"),
                                      "prefix": str(home.prefix), "removed": prune(home)}
        else:
            result = transact(Run(home, layout, "install"), new_id, kit, kit_json, None)
    result["recovered"] = recovered
    result["linked"] = str(_link_into(bin_dir, home))
    result["initialised"] = False
    if init and not initialised and trust_file is not None:
        args = ["--root", str(layout.root), "init", "--trust", str(trust_file), "--json"]
        args += ["--device-id", device_id] if device_id else []
        args += ["--ring", ring] if ring else []
        p = subprocess.run([str(home.entry), *args], capture_output=True, text=True,
                           errors="replace", env=scrubbed_env(), cwd="/", check=False,
                           timeout=SELF_CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise PreconditionError(f"agent {kit.version} is installed, but 'init' failed: "
                                    f"{last_line(p.stderr)}")
        result["initialised"] = True
    if layout.is_initialised():
        with AgentLock(layout.lock):
            if rotation is not None:
                write_atomic(layout.trust_root, trust.to_bytes())
                Journal(layout.journal).append("trust-rotated", version=trust.version)
            record_accepted(layout, kit.version, new_id)
            Journal(layout.journal).append("agent-installed", agent=new_id, version=kit.version,
                                           switched=result["updated"], prefix=str(home.prefix))
    unit, kept = _install_unit(kit_dir, systemd_dir, home, layout.root)
    result["unit"] = str(unit) if unit else None
    result["unit_kept"] = str(kept) if kept else None
    result["trust_rotated"] = trust.version if rotation is not None else None
    result["root"] = str(layout.root)
    result["enabled"] = False
    result["next"] = [" ".join(c) for c in NEXT] if unit and not enable else []
    if enable:
        if unit is None:
            raise UsageError("--enable: no systemd unit was installed (no systemd directory, "
                             "or a kit without a unit)")
        _enable()
        result["enabled"] = True
    return result
