"""``airlock agent-kit`` with the pip a host has, not the newest.

A venv made by Debian 12's python3 has pip 23.0.1, which takes ``--platform``
and ``--abi`` only with ``--target``; Ubuntu 22.04's has 22.0.2, too old for
the resolution report. The venvs here are this interpreter with an older pip
installed offline from the wheels Python itself bundles, and this venv's other
packages lent through a .pth file (placed after the venv's own, so its pip wins).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.agentkit import project_copy
from tests.support.cli import tool_env
from tests.support.keyset import Keys

PIP_WHEELS = {
    "23.0.1": [Path("/usr/share/python-wheels/pip-23.0.1-py3-none-any.whl"),
               Path("/root/.pyenv/versions/3.10.13/lib/python3.10/ensurepip/_bundled/"
                    "pip-23.0.1-py3-none-any.whl")],
    "22.0.4": [Path("/root/.pyenv/versions/3.8.18/lib/python3.8/ensurepip/_bundled/"
                    "pip-22.0.4-py3-none-any.whl")],
}


def wheel_of(version: str) -> Path:
    found = [w for w in PIP_WHEELS[version] if w.exists()]
    if not found:
        pytest.skip(f"no pip {version} wheel on this machine ({PIP_WHEELS[version][0]})")
    return found[0]


def venv_with_pip(where: Path, version: str) -> Path:
    """A venv of this interpreter whose pip is ``version``; its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    installer = wheel_of("23.0.1")  # a wheel runs as pip: it installs the wanted one
    subprocess.run([str(python), f"{installer}/pip", "install", "-q", "--no-index",
                    "--disable-pip-version-check", str(wheel_of(version))],
                   check=True, timeout=300, capture_output=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    (Path(site.stdout.strip()) / "lend-packages.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, text=True)
    assert pip.stdout.startswith(f"pip {version} "), pip
    return python


def agent_kit(python: Path, tmp_path: Path, keys: Keys) -> subprocess.CompletedProcess[str]:
    project = project_copy(tmp_path / "proj", "0.2.0")
    return subprocess.run(
        [str(python), "-m", "bundler", "agent-kit", "--project", str(project), "--key",
         str(keys.release_key), "-o", str(tmp_path / "kit.tar")],
        capture_output=True, text=True, env=tool_env(), cwd=tmp_path, timeout=900)


def test_agent_kit_builds_with_debian_12s_pip(tmp_path: Path, keyset: Keys) -> None:
    python = venv_with_pip(tmp_path / "venv", "23.0.1")
    r = agent_kit(python, tmp_path, keyset)
    # Was: "ERROR: Can not use any platform or abi specific options unless installing
    # via '--target'", exit 2.
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "kit.tar").stat().st_size > 0


def test_agent_kit_says_which_pip_it_needs(tmp_path: Path, keyset: Keys) -> None:
    python = venv_with_pip(tmp_path / "venv", "22.0.4")
    r = agent_kit(python, tmp_path, keyset)
    assert r.returncode == 5, r
    assert r.stderr.splitlines() == [
        f"airlock: error: airlock agent-kit needs pip 23.0 or newer; {python} has pip 22.0.4 "
        f"({python} -m pip install 'pip>=23.0')"]
    assert not (tmp_path / "kit.tar").exists()
