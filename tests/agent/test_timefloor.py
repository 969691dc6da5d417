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


def _time_keys(tmp: Path, keyset: Keys) -> tuple[Path, Path]:
    """A time signer's key, and a trust root naming it (rotated from the keyset's)."""
    from keys.keyfile import generate_keypair

    key, pub = generate_keypair("time", tmp / "timekeys")
    trust = tmp / "root-2.json"
    r = at(None, "bundler", "keys", "rotate", "--trust", keyset.trust, "--root-key",
           keyset.root_key, "--time-signer", f"clock:{pub}", "-o", trust)
    assert r.returncode == 0, r.stderr
    return key, trust


def test_a_time_token_cures_a_clock_far_ahead_and_a_replay_changes_nothing(
        tmp_path: Path, keyset: Keys) -> None:
    key, trust = _time_keys(tmp_path, keyset)
    root = init_device(tmp_path / "device", keyset)
    assert at(None, "agent", "--root", root, "config", "--trust-root", trust).returncode == 0
    old = tmp_path / "old.json"
    assert at("-2d", "bundler", "time-token", "--key", key, "--valid-for", "30d",
              "-o", old).returncode == 0
    assert at(None, "agent", "--root", root, "install", release(tmp_path, keyset, 1)).returncode == 0
    token = tmp_path / "carried" / "time.json"  # not beside the bundle: install would apply it
    token.parent.mkdir()
    r = at(None, "bundler", "time-token", "--key", key, "-o", token)
    assert r.returncode == 0, r.stderr

    fresh = release(tmp_path, keyset, 2)
    assert at(AHEAD, "agent", "--root", root, "install", fresh).returncode == 3
    r = at(AHEAD, "agent", "--root", root, "time", "apply", token, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["applied"] is True
    r = at(AHEAD, "agent", "--root", root, "install", fresh)
    assert r.returncode == 0, r.stderr
    assert active_id(root) == "vision-2"
    floor = (root / "trust" / "time.json").read_bytes()

    # Replayed older token: nothing changes, not even the recorded clock offset.
    r = at(AHEAD, "agent", "--root", root, "time", "apply", old, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["applied"] is False
    assert (root / "trust" / "time.json").read_bytes() == floor


def test_a_token_from_a_release_key_is_refused(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    token = tmp_path / "time.json"
    assert at(None, "bundler", "time-token", "--key", keyset.release_key, "-o",
              token).returncode == 0
    r = at(RESET, "agent", "--root", root, "time", "apply", token)
    assert r.returncode == 3 and "not signed by a time signer" in r.stderr, r.stderr
    assert not (root / "trust" / "time.json").exists()


_METRICS = ("import sys; from prometheus_client import generate_latest; "
            "from pathlib import Path; from agent.layout import Layout; "
            "from agent.observe.metrics import Observed, metrics_registry; "
            "sys.stdout.write(generate_latest(metrics_registry(Layout(Path(sys.argv[1])), "
            "Observed())).decode())")


def test_a_clock_behind_the_floor_is_reported_by_page_metrics_and_report(
        tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    assert at(None, "agent", "--root", root, "install", release(tmp_path, keyset, 1)).returncode == 0
    page = tmp_path / "status.html"
    assert at(RESET, "agent", "--root", root, "status", "--html", page).returncode == 0
    assert "The clock reads <b class='mono'>1970-01-02" in page.read_text()

    r = subprocess.run(["faketime", "-f", RESET, sys.executable, "-c", _METRICS, str(root)],
                       capture_output=True, text=True, timeout=120, env=tool_env())
    assert r.returncode == 0, r.stderr
    assert 'airlock_clock_state{state="behind"} 1.0' in r.stdout
    behind = next(ln for ln in r.stdout.splitlines()
                  if ln.startswith("airlock_clock_behind_floor_seconds "))
    assert float(behind.split()[1]) > 50 * 365 * 86400

    out = tmp_path / "report.json"
    assert at(RESET, "agent", "--root", root, "report", "-o", out).returncode == 0
    from keys.device import REPORT_TYPE, verify_document

    clock = verify_document(out.read_bytes(), REPORT_TYPE).body["status"]["clock"]
    assert clock["state"] == "behind" and clock["clock"].startswith("1970-01-02")
