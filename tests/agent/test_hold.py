"""Confirm or revert: ``install --hold`` switches, ``commit`` makes it final, no commit reverts.

A device that loses its network right after a held switch must come back by itself: the
next agent command past the deadline rolls back, records why, and a kill -9 anywhere in a
held install leaves either the old release or a held new one, never an unheld new one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.journal import Journal
from tests.support.cli import run_agent
from tests.support.device import (
    active_id,
    agent_json,
    assert_consistent,
    copy_device,
    init_device,
)
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec

# Seconds held. Every wait sleeps only until the deadline hold.json records, so a slow
# machine costs margin, not a flaky "before the deadline" step.
HOLD = "3"


@pytest.fixture(scope="module")
def installed(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A device on vision-1, and vision-2 to hold: built and installed once for the module."""
    work = tmp_path_factory.mktemp("hold")
    v1 = build(write_spec(work, sequence=1, runs=2), work / "vision-1.airlock",
               [keyset.release_key])
    v2 = build(write_spec(work, sequence=2, runs=2, scale=3.0), work / "vision-2.airlock",
               [keyset.release_key])
    root = init_device(work / "device", keyset)
    agent_json(root, "install", v1)
    return root, v2


@pytest.fixture
def device(installed: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of that device (hard links kept) to hold, commit and kill at will."""
    return copy_device(installed[0], tmp_path / "device"), installed[1]


def _deadline(root: Path) -> float:
    return float(json.loads((root / "hold.json").read_text())["deadline"])


def _wait_past(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.time()) + 0.3)


def _events(root: Path) -> list[str]:
    return [e["event"] for e in Journal(root / "journal.jsonl").entries()]


def test_a_hold_not_committed_reverts_at_the_next_command(device: tuple[Path, Path]) -> None:
    root, v2 = device
    # Three agent commands must run before the deadline: on a loaded 2-core runner each
    # start can take a second or more, so this hold is longer than the others.
    hold = "10"
    result = agent_json(root, "install", v2, "--hold", hold)
    assert result["active"] == "vision-2" and result["held_until"]
    deadline = _deadline(root)
    text = run_agent("--root", root, "install", v2, "--hold", hold)  # already active: no-op
    assert text.returncode == 0
    # Before the deadline nothing happens.
    assert agent_json(root, "check")["release"] == "vision-2"
    assert time.time() < deadline  # the steps above did run before it
    _wait_past(deadline)
    p = run_agent("--root", root, "check", "--json")
    assert p.returncode == 0, p.stderr
    assert "reverted: hold expired: vision-2 was not committed" in p.stderr
    assert active_id(root) == "vision-1"
    events = _events(root)
    assert events.index("hold-armed") < events.index("hold-expired") < len(events) - 1
    assert "rolled-back" in events[events.index("hold-expired"):]
    assert not (root / "hold.json").exists()
    # Too late to commit: exit 5, and it says so.
    p = run_agent("--root", root, "commit")
    assert p.returncode == 5 and "nothing is held" in p.stderr
    assert_consistent(root)


def test_a_committed_hold_stays(device: tuple[Path, Path]) -> None:
    root, v2 = device
    # A longer hold than the others: the commit must land inside it even when a loaded
    # machine takes seconds to start the agent (3 s ran out on Python 3.13 at load 10).
    agent_json(root, "install", v2, "--hold", "10")
    deadline = _deadline(root)
    assert agent_json(root, "commit")["committed"] == "vision-2"
    _wait_past(deadline)
    agent_json(root, "check")
    assert active_id(root) == "vision-2"
    assert "hold-expired" not in _events(root)


def test_hold_needs_a_release_to_go_back_to(keyset: Keys, tmp_path: Path,
                                            make_bundle: Callable[..., Path]) -> None:
    root = init_device(tmp_path / "empty", keyset)
    p = run_agent("--root", root, "install", make_bundle(sequence=1, runs=2), "--hold", "60")
    assert p.returncode == 5 and "go back to" in p.stderr
    assert active_id(root) is None


@pytest.mark.parametrize("point", ["after-switch", "before-commit", "after-commit"])
def test_kill_9_in_a_held_install_never_leaves_an_unheld_switch(
        device: tuple[Path, Path], point: str) -> None:
    root, v2 = device
    p = run_agent("--root", root, "install", v2, "--hold", HOLD,
                  env={"AIRLOCK_CRASH_AT": point})
    assert p.returncode == -9
    deadline = _deadline(root)  # armed before the switch, whichever point was hit
    status = assert_consistent(root)  # recovery ran
    if point == "after-commit":
        assert status["active"]["id"] == "vision-2"  # held: the deadline brings vision-1 back
        _wait_past(deadline)
        agent_json(root, "gc")
    assert active_id(root) == "vision-1"
    agent_json(root, "install", v2)  # and an unheld install afterwards is final
    _wait_past(deadline)
    agent_json(root, "check")
    assert active_id(root) == "vision-2"


def test_a_pending_hold_shows_in_status_the_page_and_metrics(device: tuple[Path, Path]) -> None:
    from tests.support.serve import Serve, metric

    root, v2 = device
    agent_json(root, "install", v2, "--hold", "600")
    deadline = _deadline(root)
    hold = agent_json(root, "status")["hold"]
    assert hold["release"] == "vision-2" and hold["comes_back"] == "vision-1"
    assert hold["deadline_unix"] == deadline and 590 <= hold["seconds_left"] <= 600
    assert hold["commit"] == "airlock-agent commit"
    # The status command cannot know whether serve runs: it says both, and which is which.
    assert hold["reverted_by"] == "serve-or-next-command" and "next agent command" in \
        hold["reverts"]
    text = run_agent("--root", root, "status").stdout
    assert "HELD      vision-2 until " in text and "then vision-1 comes back" in text
    assert "'airlock-agent commit'" in text
    with Serve.start(root) as s:
        page = s.get("/")
        assert "Held install" in page and "airlock-agent commit" in page
        assert "serve reverts it at the deadline" in page
        served = json.loads(s.get("/status"))["hold"]
        assert served["reverted_by"] == "serve"
        assert metric(s.get("/metrics"), "airlock_hold_deadline_seconds", release="vision-2",
                      previous="vision-1") == deadline
    agent_json(root, "commit")
    assert agent_json(root, "status")["hold"] is None
    assert "HELD" not in run_agent("--root", root, "status").stdout
