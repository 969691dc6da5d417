"""Every bad bundle of the corpus is refused by ``airlock-agent install`` on a live device.

The device is initialised with the corpus trust root, in ring ``canary``, and
runs a good release (sequence ACTIVE_SEQUENCE). Every case is installed on
that one device, in turn. For each: exit 3 (or 5 for resources), one line
naming the problem, nothing written outside ``ROOT/staging`` (the tree of
ROOT, journal aside, and of the directory around it, hashed before and
after), staging empty, the journal chain intact with the rejection recorded.
The active release passes ``airlock-agent check`` before the first case and
after the last one; since every case leaves ROOT byte for byte as it was,
that covers each case (and saves a health check per case).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.journal import Journal
from tests.hostile.cases import CASES, Case
from tests.support.cli import run_agent
from tests.support.device import kit_device
from tests.support.kit import ACTIVE_SEQUENCE, Kit
from tests.support.treehash import listing


@pytest.fixture(scope="module")
def device(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = kit_device(kit, tmp_path_factory.mktemp("corpus-device"))
    _passes_check(root)
    return root


def _passes_check(root: Path) -> None:
    check = run_agent("--root", root, "check")
    assert check.returncode == 0, check.stderr
    assert f"vision-{ACTIVE_SEQUENCE}" in check.stdout


_SKIP = {"root/journal.jsonl", "root/staging"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_install_refuses(case: Case, kit: Kit, device: Path, tmp_path: Path) -> None:
    bundle = case.write(kit, tmp_path / "media")
    site = device.parent
    journal = Journal(device / "journal.jsonl")
    journal_lines = journal.verify()
    before = listing(site, skip=_SKIP)

    r = run_agent("--root", device, "install", bundle, cwd=site)

    assert "Traceback" not in r.stderr
    assert r.returncode in (case.agent_exit or (case.exit,)), r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("airlock-agent: error: "), r.stderr
    assert (case.agent_error or case.error) in lines[0]
    assert listing(site, skip=_SKIP) == before
    assert list((device / "staging").iterdir()) == []
    assert journal.verify() > journal_lines  # the refusal is on record, the chain intact


def test_active_release_passes_check_after_every_case(device: Path) -> None:
    _passes_check(device)
    from agent.fsck import fsck
    from agent.layout import Layout

    assert fsck(Layout(device))["ok"]
