"""The suite's sandbox is in force, and its session-end check sees a global place change."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import hermetic


def test_the_suite_runs_with_its_own_home_root_fleet_and_cache() -> None:
    sandbox = Path(os.environ["AIRLOCK_TEST_SANDBOX"])
    assert Path.home().is_relative_to(sandbox)
    assert Path(os.environ["AIRLOCK_ROOT"]).is_relative_to(sandbox)
    assert Path(os.environ["AIRLOCK_FLEET"]).is_relative_to(sandbox)
    cache = Path(os.environ.get("AIRLOCK_TEST_CACHE") or hermetic.DEFAULT_CACHE)
    assert Path(os.environ["XDG_CACHE_HOME"]) == cache


def test_a_changed_place_is_named(tmp_path: Path) -> None:
    device, fleet, cache = tmp_path / "var-lib-airlock", tmp_path / "airlock-fleet", tmp_path / "c"
    device.mkdir()
    (device / "trust").mkdir()
    (cache / "wheels").mkdir(parents=True)
    (cache / "wheels" / "numpy.whl").write_bytes(b"x")
    places = [device, fleet, cache]
    before = hermetic.snapshot(places)
    assert hermetic.compare(before, hermetic.snapshot(places)) == []
    (device / "trust" / "root.json").write_text("{}")
    fleet.mkdir()
    (cache / "wheels" / "numpy.whl").write_bytes(b"xy")
    assert hermetic.compare(before, hermetic.snapshot(places)) == [
        f"{fleet}: appeared",
        f"{cache}: {cache / 'wheels' / 'numpy.whl'} changed",
        f"{device}: {device / 'trust'} changed",
    ]
