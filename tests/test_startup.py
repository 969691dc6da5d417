"""Start-up: the commands a person runs to look (``--version``, ``--help``, ``status``) import only what they need.

    python -X importtime -m bundler --version 2>&1 | sort -t'|' -k2 -n | tail

Issue 33 measured ``airlock --version`` at 0.26 s against 0.04 s for
``python -c pass``: building the parser imported every command's module and
with them python-tuf, cryptography, the HSM signer…. These tests run each
command in a subprocess under ``-X importtime`` and fail naming the heavy
module that came back. They assert on WHICH modules load, never on
milliseconds, so they hold on a loaded machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import tool_env
from tests.support.device import init_device
from tests.support.keyset import Keys

#: Modules that cost tens of milliseconds or more to import, each a top-level name.
HEAVY = frozenset({
    "numpy", "onnxruntime", "tuf", "yaml", "cryptography", "sqlalchemy", "alembic",
    "requests", "oras", "jwcrypto", "paramiko", "cyclonedx", "psutil", "prometheus_client",
    "securesystemslib", "pkcs11",
})

#: What ``status`` needs: it reads agent.yaml (yaml) and verifies the trust root
#: against itself (python-tuf, securesystemslib, cryptography; securesystemslib.signer
#: loads its HSM signer, pkcs11, whenever python-tuf is imported) to report its damage.
STATUS_NEEDS = frozenset({"yaml", "tuf", "securesystemslib", "cryptography", "pkcs11"})


def imported(module: str, *args: str) -> set[str]:
    """Every module ``python -m MODULE ARGS`` imported, and each one's top-level name."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", module, *args],
                       capture_output=True, text=True, env=tool_env(None), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    names = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.update({name, name.split(".")[0]})
    return names


@pytest.mark.parametrize("argv", [
    ("bundler", "--version"),
    ("bundler", "--help"),
    ("bundler",),
    ("agent", "--version"),
    ("agent", "--help"),
    ("agent", "rollback", "--help"),
])
def test_looking_commands_import_nothing_heavy(argv: tuple[str, ...]) -> None:
    heavy = sorted(imported(*argv) & HEAVY)
    assert not heavy, f"{' '.join(argv)} imports {', '.join(heavy)}"


def test_status_imports_only_what_it_reads(keyset: Keys, tmp_path: Path) -> None:
    root = init_device(tmp_path / "device", keyset)
    names = imported("agent", "status", "--root", str(root))
    heavy = sorted(names & (HEAVY - STATUS_NEEDS))
    assert not heavy, f"airlock-agent status imports {', '.join(heavy)}"
    # A device with no release has no release metadata to read: the reader
    # (keys.release, ~30 ms of our own modules) stays unloaded.
    assert "keys.release" not in names
