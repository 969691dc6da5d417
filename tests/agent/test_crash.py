"""Real kill -9 of the agent at every crash point and at random instants.

After each kill a fresh agent start must find the old or the new release
active and passing its health check, a consistent store, an empty staging
area and an intact journal (``assert_consistent``). Deterministic kills use
``AIRLOCK_CRASH_AT`` (agent/faults.py); random ones send SIGKILL from here
after a random delay. ``AIRLOCK_RANDOM_KILLS=N`` runs N random kills (default
10) and ``AIRLOCK_RANDOM_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.faults import CRASH_POINTS
from tests.support.cli import REPO, run_agent, tool_env
from tests.support.device import agent_json, assert_consistent, copy_device, init_device
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, keyset: Keys) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("crash-bundles")
    out: dict[str, Path] = {}
    variants: dict[str, dict[str, Any]] = {
        "v1": {"sequence": 1, "scale": 2.0},
        "v2": {"sequence": 2, "scale": 3.0},
        "v3": {"sequence": 3, "scale": 4.0},
        # a release whose probe fails after the switch: automatic rollback
        "v2-probe-fails": {"sequence": 2, "scale": 3.0,
                           "extra": {"hooks": {"probe": "false", "probe_window_s": 0.3}}},
        # big enough that a random kill often lands while blobs are written
        "v2-big": {"sequence": 2, "scale": 3.0, "pad_mb": 48},
    }
    for name, kw in variants.items():
        sub = d / name
        sub.mkdir()
        out[name] = build(write_spec(sub, **kw), sub / f"{name}.airlock", [keyset.release_key])
    return out


def _prepared(tmp_path_factory: pytest.TempPathFactory, keyset: Keys, bundles: dict[str, Path],
              names: list[str]) -> Path:
    root = init_device(tmp_path_factory.mktemp("base") / "device", keyset)
    for name in names:
        p = run_agent("--root", root, "install", bundles[name])
        assert p.returncode == 0, p.stderr
    return root


@pytest.fixture(scope="module")
def base_v1(tmp_path_factory: pytest.TempPathFactory, keyset: Keys,
            bundles: dict[str, Path]) -> Path:
    return _prepared(tmp_path_factory, keyset, bundles, ["v1"])


@pytest.fixture(scope="module")
def base_v12(tmp_path_factory: pytest.TempPathFactory, keyset: Keys,
             bundles: dict[str, Path]) -> Path:
    return _prepared(tmp_path_factory, keyset, bundles, ["v1", "v2"])


@pytest.fixture(scope="module")
def base_v123(tmp_path_factory: pytest.TempPathFactory, keyset: Keys,
              bundles: dict[str, Path]) -> Path:
    return _prepared(tmp_path_factory, keyset, bundles, ["v1", "v2", "v3"])


def _copy(base: Path, dest: Path) -> Path:
    return copy_device(base, dest)


INSTALL_ORDER = CRASH_POINTS[: CRASH_POINTS.index("after-commit") + 1]
# point -> (base device, command, active release expected after recovery)
SCENARIOS: dict[str, tuple[str, list[str], str]] = {
    **{p: ("v1", ["install", "v2"], "vision-2" if p == "after-commit" else "vision-1")
       for p in INSTALL_ORDER},
    "mid-auto-rollback": ("v1", ["install", "v2-probe-fails"], "vision-1"),
    "rollback-before-switch": ("v12", ["rollback"], "vision-2"),
    "mid-rollback": ("v12", ["rollback"], "vision-2"),
    "rollback-after-switch": ("v12", ["rollback"], "vision-2"),
    "gc-mid-delete": ("v123", ["gc", "--keep", "0"], "vision-3"),
    "gc-after-releases": ("v123", ["gc", "--keep", "0"], "vision-3"),
    "mid-recovery": ("v1", ["install", "v2"], "vision-1"),
}


def test_every_crash_point_has_a_scenario() -> None:
    from agent.faults import POINTS_BY_COMMAND

    assert set(SCENARIOS) == set(CRASH_POINTS)
    assert {p for points in POINTS_BY_COMMAND.values() for p in points} == set(CRASH_POINTS)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_crash_point(point: str, tmp_path: Path, bundles: dict[str, Path],
                             base_v1: Path, base_v12: Path, base_v123: Path) -> None:
    base_name, cmd, expected = SCENARIOS[point]
    base = {"v1": base_v1, "v12": base_v12, "v123": base_v123}[base_name]
    root = _copy(base, tmp_path / "device")
    args = [bundles.get(a, a) for a in cmd]
    first = "after-switch" if point == "mid-recovery" else point
    p = run_agent("--root", root, *args, env={"AIRLOCK_CRASH_AT": first})
    assert p.returncode == -signal.SIGKILL, (point, p.returncode, p.stderr)
    if point == "mid-recovery":
        p = run_agent("--root", root, "status", env={"AIRLOCK_CRASH_AT": point})
        assert p.returncode == -signal.SIGKILL, p.stderr
    status = assert_consistent(root)
    assert status["active"]["id"] == expected, (point, status)
    assert agent_json(root, "check")["ok"]
    if cmd[0] == "install":
        # Nothing is stuck: the same bundle installs (or is already active) now.
        again = agent_json(root, "install", bundles["v2"])
        assert again["active"] == "vision-2"
        assert_consistent(root)


def _start(root: Path, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "agent", "--root", str(root), *args],
                            env=tool_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_random_kills(tmp_path: Path, bundles: dict[str, Path], base_v1: Path,
                      base_v12: Path) -> None:
    from agent.journal import Journal

    count = int(os.environ.get("AIRLOCK_RANDOM_KILLS", "10"))
    seed = int(os.environ.get("AIRLOCK_RANDOM_SEED", str(time.time_ns() % 100000)))
    rng = random.Random(seed)
    jobs = {"install": (base_v1, ["install", str(bundles["v2-big"])]),
            "rollback": (base_v12, ["rollback"])}
    # How long an undisturbed run takes here, so the kills spread over the whole of it.
    took: dict[str, float] = {}
    for name, (base, args) in jobs.items():
        start = time.monotonic()
        assert _start(_copy(base, tmp_path / f"timing-{name}"), args).wait() == 0
        took[name] = time.monotonic() - start
    outcomes: list[str] = []
    for i in range(count):
        name = "rollback" if i % 3 == 2 else "install"
        base, args = jobs[name]
        root = _copy(base, tmp_path / f"device-{i}")
        delay = rng.uniform(0.1, 1.0) * took[name]
        proc = _start(root, args)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        code = proc.wait()
        entry = list(Journal(root / "journal.jsonl").entries())[-1]
        last = f"{entry['event']} {entry.get('release') or ''}".strip()
        context = f"seed {seed}, run {i} ({name}), killed after {delay:.2f} s"
        status = assert_consistent(root)
        assert status["active"]["id"] in ("vision-1", "vision-2"), context
        check = run_agent("--root", root, "check")
        assert check.returncode == 0, (context, check.stderr)
        outcomes.append(f"{name} {delay:.2f}s: " + (f"killed after '{last}'" if code == -9
                                                     else "finished"))
    print(f"random kills (seed {seed}, undisturbed {took}):\n  " + "\n  ".join(outcomes))
