"""The two command lines, run in a subprocess exactly as a user runs them.

    r = run_airlock("verify", bundle, "--trust", trust)          # python -m bundler
    r = run_agent("--root", root, "status", "--json")             # python -m agent
    assert r.returncode == 0, r.stderr

The child gets ``PYTHONPATH`` set to this checkout (``REPO``), so it runs the
code under test, not whatever copy is installed; ``tool_env`` is that
environment, for tests that start the tools with ``subprocess.Popen``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``REPO`` first on ``PYTHONPATH``, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_tool(
    module: str,
    *args: Any,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
    stdin: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS...``; text output unless ``input`` bytes are fed to stdin.

    ``stdin`` is a file descriptor to read instead (``tests.support.terminal``).
    """
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=input is None,
        env=tool_env(env),
        timeout=timeout,
        cwd=cwd,
        input=input,
        **({"stdin": stdin} if stdin is not None else {}),
    )


def run_airlock(*args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``airlock ARGS...`` (the host tool)."""
    return run_tool("bundler", *args, **kw)


def run_agent(*args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``airlock-agent ARGS...`` (the device tool)."""
    return run_tool("agent", *args, **kw)
