"""What this agent is: its version, platform, Python, and the kit it was installed from.

Headquarters reads this in inventories and status to know which kit a site
needs; ``airlock-agent --version`` prints it::

    me = identity()
    me["version"], me["platform"], me["python"]   # "0.2.0", "linux/arm64", "3.11"
    me["installed_from"], me["kit"]               # "kit", "0.2.0-1f3a9c0b7d2e" (or "pip", None)
    home = agent_home()                           # Path("/opt/airlock") or None

An agent installed from a kit runs from ``PREFIX/agents/VERSION-ID/``, a venv
holding a copy of its kit's signed list (``airlock-kit.json``); that file is
how it knows it may update itself. An agent installed with pip has no home
and leaves a release's agent kit alone.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["agent_home", "agent_version", "identity", "running_agent_id"]


def agent_version() -> str:
    """The installed airlock-edge version ("unknown" when run from a bare checkout)."""
    from importlib import metadata  # ~15 ms: only for commands that show the version

    try:
        return metadata.version("airlock-edge")
    except metadata.PackageNotFoundError:
        return "unknown"


def running_agent_id() -> str | None:
    """``VERSION-ID`` of the kit-installed agent this process runs from, else None."""
    venv = Path(sys.prefix).resolve()  # PREFIX/current/bin/python runs agents/ID too
    if venv.parent.name != "agents":
        return None  # a pip install: decided without importing kitverify (pure-Python Ed25519)
    from keys.kitverify import MARKER

    if (venv / MARKER).is_file():
        return venv.name
    return None


def agent_home() -> Path | None:
    """PREFIX of the kit-installed agent this process runs from (``/opt/airlock``), else None."""
    return Path(sys.prefix).resolve().parent.parent if running_agent_id() else None


def identity() -> dict[str, Any]:
    from keys.kitverify import host_platform

    home = agent_home()
    kit = running_agent_id()
    return {
        "version": agent_version(),
        "platform": host_platform(),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "python_full": sys.version.split()[0],
        "installed_from": "kit" if kit else "pip",
        "kit": kit,
        "home": str(home) if home else None,
    }
