"""The agent runs on a device without the bundler's dependencies (DESIGN: ``[agent]`` extra).

The agent process and its health-check child run with ``bundler``, ``oras``,
``paramiko``, ``onnx`` and ``requests`` made unimportable: install, status,
check and rollback must still work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.support.cli import REPO
from tests.support.keyset import Keys

_BLOCKED = ("bundler", "oras", "paramiko", "onnx", "requests")


def _blocker(directory: Path) -> Path:
    """A sitecustomize that makes the host-only packages fail to import, in every process."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        "import sys\n"
        f"for name in {_BLOCKED!r}:\n"
        "    sys.modules[name] = None  # import now raises ImportError\n"
    )
    return directory


def _agent(blocker: Path, *args: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{blocker}{os.pathsep}{REPO}")
    return subprocess.run(
        [sys.executable, "-m", "agent", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_agent_works_without_bundler_dependencies(
    keyset: Keys, make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    blocker = _blocker(tmp_path / "block")
    probe = subprocess.run(
        [sys.executable, "-c", "import oras"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(blocker)),
    )
    assert probe.returncode != 0, "the blocker must really block"

    v1, v2 = make_bundle(sequence=1), make_bundle(sequence=2, scale=3.0)
    root = tmp_path / "device"
    for args in (("init", "--trust", keyset.trust), ("install", v1), ("install", v2)):
        r = _agent(blocker, "--root", root, *args)
        assert r.returncode == 0, r.stderr
    status = json.loads(_agent(blocker, "--root", root, "status", "--json").stdout)
    assert status["active"]["sequence"] == 2 and status["previous"]["sequence"] == 1
    assert _agent(blocker, "--root", root, "check").returncode == 0
    r = _agent(blocker, "--root", root, "rollback")
    assert r.returncode == 0, r.stderr
    status = json.loads(_agent(blocker, "--root", root, "status", "--json").stdout)
    assert status["active"]["sequence"] == 1
