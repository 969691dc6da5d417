"""The suite's own HOME, agent ROOT, fleet and cache, and a check that no global place changed.

tests/conftest.py calls these from pytest's hooks, before any test runs and after the last::

    sandbox = enter_sandbox()          # sets HOME, AIRLOCK_ROOT, AIRLOCK_FLEET, XDG_CACHE_HOME
    before = snapshot(watched_places())
    ...                                # the run
    changed = compare(before, snapshot(watched_places()))   # ["/var/lib/airlock: appeared"]

A test run must not read or write a device's state (``/var/lib/airlock``), the
machine's systemd units (``/etc/systemd``), the user's caches
(``~/.cache/airlock``), the working directory's ``airlock-fleet/`` or the
checkout's ``demo/``. Everything the suite runs inherits the sandbox's
``HOME``, ``AIRLOCK_ROOT`` and ``AIRLOCK_FLEET`` (a fresh temp directory per
run, removed at the end) and ``XDG_CACHE_HOME``: the suite's own download cache,
``$AIRLOCK_TEST_CACHE`` (default ``/var/tmp/airlock-test-cache``). That one
persists across runs on the same machine on purpose: agent kits are built from
about 100 MB of wheels, which a fresh cache per run would download every time.
A test that means to use a global place says so and uses its own copy (the demo's
test runs under a private mount of ``/var/lib/airlock``, tests/e2e/test_demo.py).

With pytest-xdist the controller makes the sandbox and its workers inherit it
(``AIRLOCK_TEST_SANDBOX``); only the controller compares the places.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tests.support.cli import REPO

__all__ = ["compare", "enter_sandbox", "leave_sandbox", "snapshot", "watched_places"]

_MARK = "AIRLOCK_TEST_SANDBOX"
DEFAULT_CACHE = "/var/tmp/airlock-test-cache"
#: Deeper trees are listed to this many entries: a changed cache shows in its first ones.
_MAX_ENTRIES = 20000


def watched_places(home: Path | None = None) -> list[Path]:
    """The global places no test may change: a device, systemd's units, caches, cwd's fleet."""
    home = home or Path(os.environ.get("AIRLOCK_TEST_REAL_HOME") or Path.home())
    # Of systemd's units only the one Airlock writes: the machine's own package installs and
    # timers may change the rest while the suite runs, and they are not a test's doing.
    return [Path("/var/lib/airlock"), Path("/etc/systemd/system/airlock-agent.service"),
            home / ".cache" / "airlock",
            Path.cwd() / "airlock-fleet", REPO / "airlock-fleet", REPO / "demo"]


def enter_sandbox() -> Path:
    """Point HOME, AIRLOCK_ROOT, AIRLOCK_FLEET and XDG_CACHE_HOME at the suite's own places."""
    existing = os.environ.get(_MARK)
    if existing and Path(existing).is_dir():
        return Path(existing)  # an xdist worker: the controller made it
    sandbox = Path(tempfile.mkdtemp(prefix="airlock-test-sandbox-"))
    cache = Path(os.environ.get("AIRLOCK_TEST_CACHE") or DEFAULT_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    (sandbox / "home").mkdir()
    os.environ.setdefault("AIRLOCK_TEST_REAL_HOME", str(Path.home()))
    os.environ.update({
        _MARK: str(sandbox),
        "HOME": str(sandbox / "home"),
        "AIRLOCK_ROOT": str(sandbox / "no-device-here"),
        "AIRLOCK_FLEET": str(sandbox / "fleet"),
        "XDG_CACHE_HOME": str(cache),
    })
    return sandbox


def leave_sandbox(sandbox: Path) -> None:
    shutil.rmtree(sandbox, ignore_errors=True)


def _listing(place: Path) -> dict[str, tuple[int, int, int]]:
    """Path -> (mode, size, mtime_ns) of ``place`` and everything under it (no links followed)."""
    found: dict[str, tuple[int, int, int]] = {}
    todo = [place]
    while todo and len(found) < _MAX_ENTRIES:
        path = todo.pop()
        try:
            st = path.lstat()
        except OSError:
            continue
        found[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns)
        if path.is_dir() and not path.is_symlink():
            try:
                todo.extend(sorted(path.iterdir()))
            except OSError:
                continue
    return found


def snapshot(places: Iterable[Path]) -> dict[str, dict[str, tuple[int, int, int]]]:
    return {str(p): _listing(p) for p in places}


def compare(before: dict[str, dict[str, tuple[int, int, int]]],
            after: dict[str, dict[str, tuple[int, int, int]]]) -> list[str]:
    """One line per watched place that changed, naming the first path that differs."""
    changed = []
    for place in sorted(set(before) | set(after)):
        old, new = before.get(place, {}), after.get(place, {})
        if old == new:
            continue
        if not old:
            changed.append(f"{place}: appeared")
            continue
        if not new:
            changed.append(f"{place}: removed")
            continue
        first = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))[0]
        how = "added" if first not in old else "removed" if first not in new else "changed"
        changed.append(f"{place}: {first} {how}")
    return changed
