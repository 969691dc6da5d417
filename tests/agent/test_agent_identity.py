"""What an agent says about itself, and what it refuses to read, without building a kit.

``--version``, ``status`` and the signed inventory name the agent's version
and platform (headquarters picks a site's kit by them); ``fsck --read-only``
works while another command holds the lock (a new agent's self-check does
that); a ROOT in a newer format than the agent is refused in one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agent.layout import Layout
from agent.lock import AgentLock
from keys.kitverify import host_platform
from tests.support.cli import run_agent
from tests.support.device import agent_json, init_device
from tests.support.keyset import Keys


def test_version_status_and_inventory_name_the_agent(keyset: Keys, tmp_path: Path) -> None:
    r = run_agent("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("airlock-agent ") and host_platform() in r.stdout
    me = json.loads(run_agent("--version", "--json").stdout)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (me["platform"], me["python"], me["installed_from"]) == (host_platform(), python, "pip")
    root = init_device(tmp_path / "device", keyset)
    assert agent_json(root, "status")["agent"] == me
    r = run_agent("--root", root, "status")
    assert f"agent     {me['version']} ({host_platform()}, Python {python}, pip)" in r.stdout

    from agent.observe.inventory import inventory

    assert inventory(Layout(root))["agent"] == me


def test_fsck_read_only_works_while_the_lock_is_held(keyset: Keys, tmp_path: Path) -> None:
    root = init_device(tmp_path / "device", keyset)
    with AgentLock(Layout(root).lock):
        assert run_agent("--root", root, "fsck").returncode == 5
        r = run_agent("--root", root, "fsck", "--read-only", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["ok"]
    r = run_agent("--root", root, "fsck", "--read-only", "--repair")
    assert r.returncode == 2 and "exclude each other" in r.stderr


def test_a_root_in_a_newer_format_is_refused_in_one_line(keyset: Keys, tmp_path: Path) -> None:
    root = init_device(tmp_path / "device", keyset)
    layout = Layout(root)
    assert json.loads(layout.format_file.read_text())["format"] == 1
    layout.format_file.write_text(json.dumps({"format": 7, "written_by": "9.0.0"}))
    for args in (["status"], ["history"], ["check"], ["install", "nothing.airlock"]):
        r = run_agent("--root", root, *args)
        assert r.returncode == 5, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert "is in ROOT format 7 (written by agent 9.0.0)" in r.stderr
        assert "understands format 1 at most" in r.stderr
    layout.format_file.write_text("{not json")
    r = run_agent("--root", root, "status")
    assert r.returncode == 5 and "cannot read" in r.stderr
    # A ROOT made before formats were counted is format 1.
    layout.format_file.unlink()
    assert run_agent("--root", root, "status").returncode == 0
