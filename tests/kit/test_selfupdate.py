"""The agent updating itself from a release that carries a kit: switch, kill -9, rollback, refusal.

A device runs agent A (1.0.0), installed with install.sh from a real kit (the
session's ``installed`` device), and release vision-1. vision-2 carries kit B
(1.1.0, ROOT format 2; a file in PREFIX makes its self-check or its first start
fail), vision-3 carries kit A. Each test starts from a copy of that device made
at the same path (a venv names its own path, so it cannot be copied elsewhere).

The agent is killed at the steps of an update in turn (agent/faults.py,
``AGENT_UPDATE_POINTS``): after each kill the next start must recover, and the
next install of the same bundle, killed at the next step, must get that far;
the last install must finish. By default that is three kills that leave
different states behind (half a venv, the new agent recovering itself, a
committed update); ``AIRLOCK_KIT_KILLS=all`` kills at every step,
``AIRLOCK_KIT_KILLS=p1,p2`` at those.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.faults import AGENT_UPDATE_POINTS
from tests.support.agentkit import (
    A,
    B,
    BuiltKit,
    DeviceImage,
    Installed,
    KitDevice,
    device_env,
)
from tests.support.cli import run_agent
from tests.support.keyset import Keys
from tests.support.serve import Serve
from tests.support.spec import build, write_spec

_WANTED = os.environ.get("AIRLOCK_KIT_KILLS", "agent-mid-venv,agent-after-switch,"
                         "agent-after-commit")
# In the order an update reaches them: a kill at one leaves the next reachable.
KILL_POINTS = AGENT_UPDATE_POINTS if _WANTED == "all" else tuple(
    p for p in AGENT_UPDATE_POINTS if p in _WANTED.split(","))


@dataclass
class Site:
    image: DeviceImage  # the device running A and vision-1
    bundles: dict[str, Path]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, kits: Callable[[str], BuiltKit],
         keyset: Keys, installed: Installed) -> Site:
    assert installed.image is not None, installed.result.stderr
    work = tmp_path_factory.mktemp("selfupdate")
    bundles = {}
    for name, sequence, kit in (("v1", 1, None), ("v2-b", 2, "b"), ("v3-a", 3, "a")):
        d = work / "build" / name
        d.mkdir(parents=True)
        extra = {"agent": {"kit": str(kits(kit).kit)}} if kit else {}
        spec = write_spec(d, sequence=sequence, scale=1.0 + sequence, extra=extra)
        bundles[name] = build(spec, work / f"{name}.airlock", [keyset.release_key])
    device = installed.image.restore()
    assert device.json("install", bundles["v1"])["active"] == "vision-1"
    return Site(DeviceImage.save(device, work / "base"), bundles)


@pytest.fixture
def device(site: Site) -> KitDevice:
    return site.image.restore()


def _events(device: KitDevice) -> list[str]:
    return [e["event"] for e in device.json("history")["entries"]]


def _assert_whole(device: KitDevice, version: str) -> dict[str, Any]:
    """What any start after anything must find: one agent, links whole, ROOT consistent.

    Returns the status, which the agent behind the entry point (``version``) printed.
    """
    assert not (device.prefix / "update.json").exists()
    staging = device.prefix / "staging"
    assert not staging.exists() or not any(staging.iterdir())
    assert device.json("fsck")["ok"]
    assert device.json("history", "--verify")["verified"]
    status = device.json("status")
    assert status["state"] == "idle" and status["agent"]["version"] == version
    return status


def test_a_newer_kit_updates_the_agent_and_an_older_one_is_refused(
        device: KitDevice, site: Site, kits: Callable[[str], BuiltKit], keyset: Keys) -> None:
    result = device.json("install", site.bundles["v2-b"])
    assert result["active"] == "vision-2"
    assert result["agent"]["updated"] and result["agent"]["version"] == B
    assert device.link("previous") == result["agent"]["previous"]
    assert str(device.link("previous")).startswith(f"{A}-")
    assert set(device.agents()) == {device.link("current"), device.link("previous")}
    events = _events(device)
    assert events[-2:] == ["agent-update-started", "agent-updated"]
    _assert_whole(device, B)
    accepted = json.loads((device.root / "trust" / "agent.json").read_text())
    assert accepted["version"] == B

    # B migrates ROOT to its format 2 on its first command that changes ROOT...
    assert device.json("check")["ok"]
    assert json.loads((device.root / "format.json").read_text())["format"] == 2
    assert (device.root / "format-2-marker").exists()
    assert "root-migrated" in _events(device)
    # ...and A, run by hand, refuses that ROOT in one line instead of misreading it.
    old = device.prefix / "previous" / "bin" / "airlock-agent"
    r = device.agent("status", exe=old)
    assert r.returncode == 5, r.stderr
    assert "ROOT format 2" in r.stderr and "understands format 1 at most" in r.stderr
    assert "Traceback" not in r.stderr

    # A release carrying the older kit A is refused whole, before anything changes...
    tree = sorted(p.relative_to(device.root).as_posix() for p in device.root.rglob("*"))
    r = device.agent("install", site.bundles["v3-a"])
    assert r.returncode == 3, r.stderr
    assert f"carries agent kit {A}, older than agent {B}" in r.stderr
    status = device.json("status")
    assert status["active"]["id"] == "vision-2" and status["agent"]["version"] == B
    assert sorted(p.relative_to(device.root).as_posix() for p in device.root.rglob("*")) == tree
    # ...and kit A's own install.sh refuses it too, before writing anything.
    r = device.install_sh(kits("a").kit, "--trust", keyset.trust)
    assert r.returncode == 3 and f"kit {A} is older than agent {B}" in r.stderr, r.stderr
    assert device.version() == B


@pytest.mark.skipif(not KILL_POINTS, reason=f"AIRLOCK_KIT_KILLS={_WANTED} names no kill point")
def test_kill_at_the_steps_of_an_update(device: KitDevice, site: Site) -> None:
    recovered = 0
    for point in KILL_POINTS:
        r = device.agent("install", site.bundles["v2-b"], env={"AIRLOCK_CRASH_AT": point})
        assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr)
        # The next start (through the entry point, whichever agent it names) recovers.
        r = device.agent("status", "--json")
        assert r.returncode == 0, (point, r.stderr)
        assert json.loads(r.stdout)["active"]["id"] == "vision-2"  # the release was committed
        committed = point == "agent-after-commit"
        _assert_whole(device, B if committed else A)
        if not committed:
            now = _events(device).count("recovered")
            assert now > recovered, point
            recovered = now
    # Nothing is stuck: the same stick again finishes the update (or finds it finished).
    again = device.json("install", site.bundles["v2-b"])["agent"]
    committed = KILL_POINTS[-1] == "agent-after-commit"
    assert again["updated"] is not committed and (committed or again["version"] == B)
    _assert_whole(device, B)
    assert set(device.agents()) == {device.link("current"), device.link("previous")}


def test_a_new_agent_that_fails_its_self_check_is_rolled_back(device: KitDevice,
                                                               site: Site) -> None:
    agents = device.agents()
    (device.prefix / "break-status").touch()  # B's status now fails (tests/support/agentkit.py)
    r = device.agent("install", site.bundles["v2-b"])
    assert r.returncode == 4, r.stderr
    assert f"agent {B} failed its self-check" in r.stderr
    assert "this build cannot read ROOT" in r.stderr and f"agent {A} is active again" in r.stderr
    status = _assert_whole(device, A)
    assert device.agents() == agents  # the broken agent's venv is gone
    assert status["active"]["id"] == "vision-2"  # the release itself stays
    assert _events(device)[-1] == "agent-update-failed"


def test_a_new_agent_whose_first_start_fails_is_rolled_back(device: KitDevice,
                                                            site: Site) -> None:
    agents = device.agents()
    (device.prefix / "break-first-start").touch()  # B fails when started as the entry point
    r = device.agent("install", site.bundles["v2-b"])
    assert r.returncode == 4, r.stderr
    assert f"agent {B} failed its first start" in r.stderr
    _assert_whole(device, A)
    assert device.agents() == agents
    assert device.link("previous") is None


def test_a_drop_folder_install_updates_the_agent(device: KitDevice, site: Site) -> None:
    """serve's drop folder goes through the door install uses (agent.operations.install_run)."""
    stick = device.dir / "stick"
    stick.mkdir()
    with Serve.start(device.root, watch=[stick], agent=[str(device.bin)],
                     environ=device_env()) as s:
        shutil.copy(site.bundles["v2-b"], stick / "v2-b.airlock")
        e = s.wait_event("drop-result", timeout=600, drop=str(stick / "v2-b.airlock"))
        assert e["outcome"] == "installed", e
        updated = s.wait_event("agent-updated")
        assert updated["version"] == B and updated["previous_version"] == A
        assert s.stop() == 0
    result = json.loads((stick / "v2-b.result.json").read_text())
    assert result["agent"]["updated"] and result["agent"]["version"] == B
    assert _events(device)[-2:] == ["agent-update-started", "agent-updated"]
    status = _assert_whole(device, B)
    assert status["active"]["id"] == "vision-2"


def test_an_agent_installed_with_pip_leaves_kits_alone(site: Site, keyset: Keys,
                                                       tmp_path: Path) -> None:
    root = tmp_path / "device"
    assert run_agent("--root", root, "init", "--trust", keyset.trust).returncode == 0
    r = run_agent("--root", root, "install", site.bundles["v2-b"], "--json")
    assert r.returncode == 0, r.stderr
    agent = json.loads(r.stdout)["agent"]
    assert not agent["updated"] and "installed with pip" in agent["reason"]
    r = run_agent("--root", root, "history", "--json")
    assert json.loads(r.stdout)["entries"][-1]["event"] == "agent-kit-skipped"
