"""``install.sh``'s last step: the new agent links itself in, writes its unit, initialises ROOT.

The kit's ``install.sh`` builds a venv from the kit's wheels with pip and no
index, then runs that venv's ``airlock-agent self-install``, which lands here::

    self_install(kit_dir, Path("/opt/airlock"), layout, trust_file=Path("root.json"),
                 bin_dir=Path("/usr/local/bin"), systemd_dir=Path("/etc/systemd/system"),
                 device_id="cam-7", ring=None, init=True)
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
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

__all__ = ["self_install"]

def _link_into(bin_dir: Path, home: AgentHome) -> Path:
    link = bin_dir / "airlock-agent"
    if link.exists() and not link.is_symlink():
        raise PreconditionError(f"{link} exists and is not a link; remove it (a pip-installed "
                                "agent?) or give --bin-dir")
    bin_dir.mkdir(parents=True, exist_ok=True)
    replace_symlink(link, str(home.entry))
    return link


def _install_unit(kit_dir: Path, systemd_dir: Path, home: AgentHome, root: Path) -> Path | None:
    """The kit's systemd unit, with this device's paths, when the kit has one and systemd is here.

    The project's unit (packaging/airlock-agent.service) names the pip install's
    paths: ``ExecStart=/usr/local/bin/airlock-agent`` and
    ``Environment=AIRLOCK_ROOT=/var/lib/airlock``; they become PREFIX's entry point
    and ``--root``. ``@AIRLOCK_AGENT@`` and ``@AIRLOCK_ROOT@`` are filled in too.
    """
    source = kit_dir / "systemd" / UNIT
    if not source.is_file() or not systemd_dir.is_dir():
        return None
    text = (source.read_text().replace("@AIRLOCK_AGENT@", str(home.entry))
            .replace("@AIRLOCK_ROOT@", str(root)))
    text = re.sub(r"^ExecStart=\S*/airlock-agent(?=\s|$)", lambda _: f"ExecStart={home.entry}",
                  text, flags=re.M)
    text = re.sub(r"^Environment=AIRLOCK_ROOT=\S*$", lambda _: f"Environment=AIRLOCK_ROOT={root}",
                  text, flags=re.M)
    dest = systemd_dir / UNIT
    write_atomic(dest, text.encode())
    return dest


def self_install(kit_dir: Path, prefix: Path, layout: Layout, *, trust_file: Path | None,
                 bin_dir: Path, systemd_dir: Path, device_id: str | None, ring: str | None,
                 init: bool) -> dict[str, Any]:
    """What ``install.sh`` leaves to the new agent it has just put in its venv."""
    home = AgentHome(prefix)
    try:
        kit_json = (kit_dir / KIT_METADATA).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {kit_dir / KIT_METADATA}: {e.strerror}") from None
    initialised = layout.is_initialised()
    if initialised:
        trust = layout.load_trust()
    elif trust_file is not None:
        try:
            trust = TrustRoot.from_bytes(trust_file.read_bytes())
        except OSError as e:
            raise UsageError(f"cannot read trust root {trust_file}: {e.strerror}") from None
    else:
        raise UsageError("give --trust root.json: ROOT is not initialised yet")
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
            record_accepted(layout, kit.version, new_id)
            Journal(layout.journal).append("agent-installed", agent=new_id, version=kit.version,
                                           switched=result["updated"], prefix=str(home.prefix))
    unit = _install_unit(kit_dir, systemd_dir, home, layout.root)
    result["unit"] = str(unit) if unit else None
    result["root"] = str(layout.root)
    return result
