"""Fault injection: real SIGKILLs, a full disk and two installs at once.

Kills. Every crash point of every command that reaches it
(``agent/faults.py``, ``POINTS_BY_COMMAND``: install, a failing install's
auto-rollback, rollback, check, gc, recovery) is hit at *every* occurrence
(``AIRLOCK_CRASH_AT=point:n`` for n = 1, 2, … until the command no longer
reaches it: ``mid-blob`` fires once per blob, ``gc-mid-delete`` once per
deletion), then the agent is killed at random instants of those commands
until at least ``AIRLOCK_FAULT_KILLS`` kills (default 100) have happened. After each kill a fresh agent command
(``airlock-agent check``, which recovers under the lock and then
health-checks ``current``) must succeed, the store must pass fsck
(``agent.fsck``: blobs hash to their names, releases resolve, links point at
releases, journal chain verifies, nothing pending or in staging) and the
active release must be the old or the new one. Long mode::

    AIRLOCK_FAULT_KILLS=3000 pytest tests/hostile/test_faults.py -q -s

``AIRLOCK_FAULT_SEED`` replays the random instants of a run.

Disk full: a small tmpfs (mounted by the test, so it needs root; skipped
with the reason otherwise, never under CI=true) fills up in the middle of a
blob — the bundle is fed through a pipe that pauses while the test takes the
last free byte — and the install must stop cleanly (exit 5 or 3) with the old
release intact.

Two installs at once: the second exits 5 at once, or with ``--wait`` runs
after the first; nothing is corrupt either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.faults import CRASH_POINTS, POINTS_BY_COMMAND
from agent.fsck import fsck
from agent.layout import Layout
from agent.switch import read_link
from tests.support.cli import REPO, run_agent, tool_env
from tests.support.device import copy_device
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec

FAULT_KILLS = int(os.environ.get("AIRLOCK_FAULT_KILLS", "100"))
SEED = int(os.environ.get("AIRLOCK_FAULT_SEED", str(time.time_ns() % 1_000_000)))
WORKERS = 2
KILLED = -9


@dataclass(frozen=True)
class Scenario:
    base: str  # which prepared device to start from
    args: tuple[str, ...]  # agent arguments; bundle names are replaced by paths
    allowed: frozenset[str]  # releases that may be active afterwards


SCENARIOS = {
    "install": Scenario("v1", ("install", "v2"), frozenset({"vision-1", "vision-2"})),
    "install-probe-fails": Scenario("v1", ("install", "v2-probe-fails"), frozenset({"vision-1"})),
    "rollback": Scenario("v12", ("rollback",), frozenset({"vision-1", "vision-2"})),
    "rollback-check": Scenario("v12", ("rollback", "--check"),
                               frozenset({"vision-1", "vision-2"})),
    "check": Scenario("v12", ("check",), frozenset({"vision-2"})),
    "gc": Scenario("v123", ("gc", "--keep", "0"), frozenset({"vision-3"})),
}


def _targets() -> list[tuple[str, str]]:
    """(scenario, crash point) for every point every command reaches (agent/faults.py)."""
    pairs = []
    for command, points in POINTS_BY_COMMAND.items():
        for point in points:
            if command == "install" and point == "mid-auto-rollback":
                pairs.append(("install-probe-fails", point))  # only a failing probe gets there
            elif command == "recovery":
                pairs.append(("install", point))  # killed after the switch, then in recovery
            else:
                pairs.append((command, point))
    return pairs


@dataclass
class Fleet:
    dir: Path
    bundles: dict[str, Path]
    bases: dict[str, Path]
    trust: Path

    def args(self, s: Scenario) -> list[str]:
        return [str(self.bundles.get(a, a)) for a in s.args]

    def device(self, base: str, name: str) -> Path:
        return copy_device(self.bases[base], self.dir / "runs" / name)


@pytest.fixture(scope="module")
def fleet(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    d = tmp_path_factory.mktemp("faults")
    variants: dict[str, dict[str, Any]] = {
        "v1": {"sequence": 1, "scale": 2.0},
        "v2": {"sequence": 2, "scale": 3.0, "pad_mb": 4},  # a blob big enough to die in
        "v2-probe-fails": {"sequence": 2, "scale": 3.0,
                           "extra": {"hooks": {"probe": "false", "probe_window_s": 0.3}}},
        "v3": {"sequence": 3, "scale": 4.0},
    }
    bundles = {}
    for name, kw in variants.items():
        sub = d / "build" / name
        sub.mkdir(parents=True)
        bundles[name] = build(write_spec(sub, **kw), d / f"{name}.airlock", [keyset.release_key])
    bases = {}
    for base, names in {"v1": ["v1"], "v12": ["v1", "v2"], "v123": ["v1", "v2", "v3"]}.items():
        root = d / "bases" / base
        assert run_agent("--root", root, "init", "--trust", keyset.trust,
                         "--device-id", "dev").returncode == 0
        for n in names:
            r = run_agent("--root", root, "install", bundles[n])
            assert r.returncode == 0, r.stderr
        bases[base] = root
    (d / "runs").mkdir()
    return Fleet(d, bundles, bases, keyset.trust)


def _agent(root: Path, args: list[str], crash_at: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"AIRLOCK_CRASH_AT": crash_at} if crash_at else {}
    return run_agent("--root", root, *args, env=env, timeout=timeout)


def _recovered(root: Path, allowed: frozenset[str], context: str) -> str:
    """A fresh agent command recovers; the store is consistent; current works."""
    r = _agent(root, ["check"])
    assert r.returncode == 0, f"{context}: check after the kill: {r.stderr}"
    assert "Traceback" not in r.stderr
    report = fsck(Layout(root))
    assert report["ok"], f"{context}: fsck: {report['problems']}"
    active = read_link(Layout(root), "current")
    assert active in allowed, f"{context}: {active} is active"
    return active


def _remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


def _record(stats: Counter[str]) -> None:
    print(f"\nfault injection (seed {SEED}): {dict(sorted(stats.items()))}")
    out = os.environ.get("AIRLOCK_RELIABILITY_OUT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"kind": "faults", "seed": SEED, **stats}) + "\n")


def test_every_crash_point_is_exercised() -> None:
    unknown = set(POINTS_BY_COMMAND) - set(SCENARIOS) - {"recovery"}
    assert not unknown, f"commands with crash points need a scenario here: {unknown}"
    covered = {point for _, point in _targets()}
    assert covered == set(CRASH_POINTS), set(CRASH_POINTS) - covered


def _at_point(fleet: Fleet, scenario: str, point: str, n: int) -> tuple[int, str | None]:
    """Kill ``scenario`` the n-th time it reaches ``point``; returns (kills, active or None)."""
    s = SCENARIOS[scenario]
    root = fleet.device(s.base, f"{scenario}-{point}-{n}")
    context = f"kill {scenario} at {point}:{n}"
    try:
        first = "after-switch" if point == "mid-recovery" else f"{point}:{n}"
        r = _agent(root, fleet.args(s), crash_at=first)
        if r.returncode != KILLED:
            assert n > 1, f"{context}: the command never reached the point: {r.stderr}"
            assert "Traceback" not in r.stderr
            return 0, None
        kills = 1
        if point == "mid-recovery":
            r = _agent(root, ["status"], crash_at=f"{point}:{n}")
            if r.returncode != KILLED:
                return 0, None
            kills += 1
        return kills, _recovered(root, s.allowed, context)
    finally:
        _remove(root)


def _random_kill(fleet: Fleet, i: int, name: str, delay: float) -> tuple[bool, str]:
    """Kill ``name`` after ``delay`` s; returns (killed, where it was)."""
    s = SCENARIOS[name]
    root = fleet.device(s.base, f"random-{i}")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "--root", str(root),
                                 *fleet.args(s)], env=tool_env(), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        killed = proc.wait() == KILLED
        lines = (root / "journal.jsonl").read_bytes().splitlines()
        last = json.loads(lines[-1])["event"] if lines and lines[-1].endswith(b"}") else "?"
        _recovered(root, s.allowed, f"seed {SEED}, random kill {i} of {name} "
                   f"after {delay:.3f} s")
        return killed, f"{name}, last journal entry '{last}'"
    finally:
        _remove(root)


def test_kill_minus_nine_everywhere(fleet: Fleet) -> None:
    stats: Counter[str] = Counter()
    # Every occurrence of every crash point of every command, two devices at a time.
    hits: Counter[tuple[str, str]] = Counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        pending = {pool.submit(_at_point, fleet, sc, p, 1): (sc, p) for sc, p in _targets()}
        while pending:
            future = next(iter(pending))
            scenario, point = pending.pop(future)
            kills, active = future.result()
            if kills:
                stats["kills at crash points"] += kills
                stats[f"active after: {active}"] += 1
                hits[(scenario, point)] += 1
                n = hits[(scenario, point)] + 1
                pending[pool.submit(_at_point, fleet, scenario, point, n)] = (scenario, point)
    assert set(hits) == set(_targets()), set(_targets()) - set(hits)
    stats["crash point occurrences"] = sum(hits.values())
    stats["(command, crash point) pairs"] = len(hits)

    # Random instants, until the total reaches FAULT_KILLS. Kills land between
    # the end of interpreter start-up (timed with 'status') and the command's end.
    t = time.monotonic()
    _agent(fleet.bases["v1"], ["status"])
    startup = (time.monotonic() - t) * 0.8
    durations = {}
    for name, s in SCENARIOS.items():
        root = fleet.device(s.base, f"timing-{name}")
        t = time.monotonic()
        _agent(root, fleet.args(s))
        durations[name] = time.monotonic() - t
        _remove(root)
    rng = random.Random(SEED)
    names = (["install"] * 6 + ["install-probe-fails"] * 2 + ["rollback"] * 2
             + ["rollback-check", "gc", "check"])
    i = 0
    with ThreadPoolExecutor(WORKERS) as pool:
        while stats["kills at crash points"] + stats["random kills"] < FAULT_KILLS:
            batch = []
            for _ in range(WORKERS * 2):
                name = rng.choice(names)
                batch.append(pool.submit(_random_kill, fleet, i, name,
                                         rng.uniform(startup, durations[name] * 1.05)))
                i += 1
            for f in batch:
                killed, where = f.result()
                stats["random kills" if killed else "random runs that finished first"] += 1
                if killed:
                    stats[f"random kill in {where}"] += 1
            assert i < FAULT_KILLS * 4, "random kills keep missing the agent"
    stats["kills"] = stats["kills at crash points"] + stats["random kills"]
    _record(stats)
    assert stats["kills"] >= FAULT_KILLS


# -- disk full ------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        why = f"cannot mount a tmpfs here: {r.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (CI must allow it: run as root with CAP_SYS_ADMIN)")
        pytest.skip(why)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the disk-full test must run as root under CI (it mounts a tmpfs)")
        pytest.skip("mounting a tmpfs needs root; run as root to test a full disk")


def _install_through_pause(root: Path, bundle: Path, pause_at: int, during_pause: object,
                           *extra: str) -> subprocess.CompletedProcess[bytes]:
    """``install -`` fed through a pipe that stops at byte ``pause_at`` while
    ``during_pause()`` runs, then delivers the rest."""
    proc = subprocess.Popen([sys.executable, "-m", "agent", "--root", str(root), "install", "-",
                             *extra], env=tool_env(), cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    data = bundle.read_bytes()
    assert proc.stdin is not None
    proc.stdin.write(data[:pause_at])
    proc.stdin.flush()
    time.sleep(1.0)  # the agent has verified the head and is writing the blob
    during_pause()  # type: ignore[operator]
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(data[pause_at:])
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _big_blob_middle(bundle: Path) -> int:
    """An offset in the middle of the bundle's largest member (the padded model)."""
    import tarfile

    with tarfile.open(bundle) as tar:
        biggest = max(tar.getmembers(), key=lambda m: m.size)
        return biggest.offset_data + biggest.size // 2


def test_disk_full_during_install(fleet: Fleet, tmp_path: Path) -> None:
    _need_root()
    with _tmpfs(tmp_path / "disk", "24m") as disk:
        root = disk / "root"
        shutil.copytree(fleet.bases["v1"], root, symlinks=True)
        config = root / "agent.yaml"
        config.write_text(config.read_text().replace("reserve_bytes: 16777216", "reserve_bytes: 0"))
        filler = disk / "filler"

        def fill() -> None:
            # Take every free byte while the agent is half-way through the blob.
            with filler.open("wb") as f:
                with contextlib.suppress(OSError):
                    os.posix_fallocate(f.fileno(), 0, os.statvfs(disk).f_bavail
                                       * os.statvfs(disk).f_frsize)
                chunk = b"\0" * 65536
                with contextlib.suppress(OSError):
                    while True:
                        f.write(chunk)
                        f.flush()

        bundle = fleet.bundles["v2"]
        r = _install_through_pause(root, bundle, _big_blob_middle(bundle), fill)
        err = r.stderr.decode()
        assert r.returncode in (3, 5), err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "out of space while installing vision-2" in err, err  # mid-write, not the pre-check
        assert read_link(Layout(root), "current") == "vision-1"
        filler.unlink()
        # With room again: recovery, consistency, the old release works, the install succeeds.
        _recovered(root, frozenset({"vision-1"}), "after the disk was full")
        r2 = run_agent("--root", root, "install", bundle)
        assert r2.returncode == 0, r2.stderr
        assert fsck(Layout(root))["ok"]


def test_disk_too_small_is_refused_before_writing(fleet: Fleet, tmp_path: Path) -> None:
    _need_root()
    with _tmpfs(tmp_path / "disk", "6m") as disk:
        root = disk / "root"
        shutil.copytree(fleet.bases["v1"], root, symlinks=True)
        r = run_agent("--root", root, "install", fleet.bundles["v2"])
        assert r.returncode == 5, r.stderr
        assert "free" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        _recovered(root, frozenset({"vision-1"}), "after a refused install")


# -- two installs at once ----------------------------------------------------------------


def test_two_installs_at_once(fleet: Fleet, tmp_path: Path) -> None:
    root = fleet.device("v1", "concurrent")
    try:
        bundle = fleet.bundles["v2"]
        results: dict[str, subprocess.CompletedProcess[str]] = {}

        def second() -> None:
            results["now"] = run_agent("--root", root, "install", fleet.bundles["v3"])
            waiting = threading.Thread(target=lambda: results.__setitem__(
                "wait", run_agent("--root", root, "install", fleet.bundles["v3"], "--wait", "60")))
            waiting.start()
            results["thread"] = waiting  # type: ignore[assignment]

        first = _install_through_pause(root, bundle, _big_blob_middle(bundle), second)
        assert first.returncode == 0, first.stderr.decode()
        now = results["now"]
        assert now.returncode == 5 and "lock" in now.stderr, now.stderr
        results["thread"].join(120)  # type: ignore[attr-defined]
        waited = results["wait"]
        assert waited.returncode == 0, waited.stderr
        _recovered(root, frozenset({"vision-3"}), "after two installs at once")
        history = [e["event"] for e in map(json.loads, (root / "journal.jsonl").read_text().splitlines())]
        assert history.count("installed") == 3  # v1 (base), v2, v3: nothing lost or doubled
    finally:
        _remove(root)
