"""A device with a bad clock (issue 31): the signed time floor, under Debian's faketime.

The agent runs at 1970 (a clock reset: no RTC battery) and at 2100 (a clock far
ahead); the machine's clock is never changed. Not with
``FAKETIME_DONT_FAKE_MONOTONIC=1``: Debian's libfaketime 0.9.10 then shifts
the absolute CLOCK_MONOTONIC deadline of ``clock_nanosleep`` (Python's
``time.sleep``) by the fake offset, and every sleep fails with EINVAL, even
at ``-1d``. With ``-f @TIME`` the faked monotonic clock starts at TIME and
advances at the real rate, so lock waits and timeouts keep working.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import tool_env
from tests.support.device import active_id, init_device
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec

pytestmark = pytest.mark.skipif(shutil.which("faketime") is None,
                                reason="needs Debian's faketime (apt-get install faketime)")

RESET = "@1970-01-02 00:00:00"  # a device that lost its clock
AHEAD = "@2100-01-01 00:00:00"  # a device whose clock runs far ahead


def at(when: str | None, module: str, *args: Any) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` with the clock at ``when`` (None: the real clock)."""
    fake = ["faketime", "-f", when] if when else []
    return subprocess.run([*fake, sys.executable, "-m", module, *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env=tool_env())


def release(tmp: Path, keyset: Keys, sequence: int, *, clock: str | None = None) -> Path:
    """A bundle of sequence ``sequence``, built (and its 30d expiry counted) at ``clock``."""
    spec = write_spec(tmp, sequence=sequence, runs=1)
    out = tmp / f"vision-{sequence}.airlock"
    if clock is None:
        return build(spec, out, [keyset.release_key])
    r = at(clock, "bundler", "build", spec, "--key", keyset.release_key, "-o", out, "--no-check")
    assert r.returncode == 0, r.stderr
    return out


def test_a_reset_clock_takes_a_valid_release_and_refuses_an_expired_one(
        tmp_path: Path, keyset: Keys) -> None:
    stale = release(tmp_path, keyset, 2, clock="-40d")  # expired ten days ago
    root = init_device(tmp_path / "device", keyset)
    # Without a floor a 1970 clock would take the stale release: the floor is what refuses it.
    assert at(None, "agent", "--root", root, "install", release(tmp_path, keyset, 1)).returncode == 0
    assert active_id(root) == "vision-1"

    r = at(RESET, "agent", "--root", root, "install", stale)
    assert r.returncode == 3, r.stderr
    assert "expired" in r.stderr
    assert active_id(root) == "vision-1"

    status = json.loads(at(RESET, "agent", "--root", root, "status", "--json").stdout)["clock"]
    assert status["state"] == "behind" and status["clock"].startswith("1970-01-02")
    assert status["judged"] == status["floor"] and status["floor_source"] == "release vision-1"
    assert "is behind the newest signed time" in at(RESET, "agent", "--root", root, "status").stdout

    fresh = release(tmp_path, keyset, 3)
    r = at(RESET, "agent", "--root", root, "install", fresh)
    assert r.returncode == 0, r.stderr
    assert active_id(root) == "vision-3"


def test_a_clock_far_ahead_is_explained_not_called_expired(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    assert at(None, "agent", "--root", root, "install", release(tmp_path, keyset, 1)).returncode == 0
    r = at(AHEAD, "agent", "--root", root, "install", release(tmp_path, keyset, 2))
    assert r.returncode == 3, r.stderr
    assert "clock reads 2100-01-01" in r.stderr and "airlock-agent time apply" in r.stderr
    assert active_id(root) == "vision-1"
    status = json.loads(at(AHEAD, "agent", "--root", root, "status", "--json").stdout)["clock"]
    assert status["state"] == "ahead"
