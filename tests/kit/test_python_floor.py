"""The interpreter floor: an agent on a Python below 3.10 is refused in one line, exit 5.

Run with the pyenv interpreters this machine has (3.9, 3.8, 2.7): install.sh
before it writes anything, the agent before it imports anything of ours.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from agent.cli import PYTHON_FLOOR
from tests.support.cli import REPO

INSTALL_SH = REPO / "bundler" / "build" / "kit_template" / "install.sh"
PYENV = Path("/root/.pyenv/versions")


def old_python(version: str) -> Path:
    python = PYENV / version / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Python {version} on this machine ({python})")
    return python


@pytest.mark.parametrize("version", ["3.9.18", "3.8.18", "2.7.18"])
def test_install_sh_refuses_a_python_below_the_floor(tmp_path: Path, version: str) -> None:
    python = old_python(version)
    prefix, root = tmp_path / "opt", tmp_path / "root"
    r = subprocess.run(["sh", str(INSTALL_SH), "--python", str(python), "--prefix", str(prefix),
                        "--root", str(root)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=60)
    assert r.returncode == 5, r
    assert r.stderr.splitlines() == [
        f"install.sh: error: {python} is Python {version}; the agent needs Python 3.10 or newer "
        "(give --python PATH)"]
    assert not prefix.exists() and not root.exists()


@pytest.mark.parametrize("version", ["3.9.18", "3.8.18"])
def test_agent_refuses_a_python_below_the_floor(tmp_path: Path, version: str) -> None:
    python = old_python(version)
    root = tmp_path / "root"
    cmd = [str(python), "-m", "agent", "--root", str(root), "init", "--device-id", "cam-7"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    found = f"Python {version} ({python}) is too old: the agent needs Python 3.10 or newer"
    assert (r.returncode, r.stdout, r.stderr) == (5, "", f"airlock-agent: error: {found}\n")
    assert not root.exists()
    r = subprocess.run([*cmd, "--json"], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=60)
    assert r.returncode == 5 and json.loads(r.stdout) == {"error": found, "exit": 5}


def test_the_floor_is_said_the_same_everywhere() -> None:
    floor = ".".join(map(str, PYTHON_FLOOR))
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'requires-python = ">={floor}"' in pyproject
    script = INSTALL_SH.read_text()
    assert f"floor={floor}\n" in script
    assert f"sys.version_info < {PYTHON_FLOOR}" in script
    kit_lock = json.loads((REPO / "packaging" / "agent-kit-lock.json").read_text())
    pythons = {t["python"] for t in kit_lock["targets"].values()}
    assert {"3.10", "3.11", "3.12", "3.13"} <= pythons, pythons
    assert all(re.fullmatch(r"3\.\d+", p) and tuple(map(int, p.split("."))) >= PYTHON_FLOOR
               for p in pythons)
