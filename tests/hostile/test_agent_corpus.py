"""Every bad bundle of the corpus is refused by ``airlock-agent install`` on a live device.

The device is initialised with the corpus trust root, in ring ``canary``, and
runs a good release (sequence ACTIVE_SEQUENCE). For each case: exit 3 (or 5
for resources), one line naming the problem, nothing written outside
``ROOT/staging`` (tree of ROOT, journal aside, and of the directory around it,
hashed before and after), staging empty, the journal chain intact with the
rejection recorded, and the active release still passes ``airlock-agent
check``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.journal import Journal
from tests.conftest import run_agent
from tests.hostile.corpus import ACTIVE_SEQUENCE, CASES, Case, Kit
from tests.hostile.treehash import listing


@pytest.fixture(scope="module")
def device(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus-device") / "root"
    r = run_agent("--root", root, "init", "--trust", kit.trust_path, "--device-id", "cam-1",
                  "--ring", "canary")
    assert r.returncode == 0, r.stderr
    active = root.parent / "active.airlock"
    active.write_bytes(kit.active)
    r = run_agent("--root", root, "install", active)
    assert r.returncode == 0, r.stderr
    active.unlink()
    return root


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_install_refuses(case: Case, kit: Kit, device: Path, tmp_path: Path) -> None:
    bundle = case.write(kit, tmp_path / "media")
    parent = tmp_path / "site"
    parent.mkdir()
    root = parent / "root"
    subprocess.run(["cp", "-a", str(device), str(root)], check=True)  # keeps hard links
    journal_lines = sum(1 for _ in Journal(root / "journal.jsonl").lines())
    before = listing(tmp_path, skip={"site/root/journal.jsonl", "site/root/staging"})

    r = run_agent("--root", root, "install", bundle, cwd=parent)

    assert "Traceback" not in r.stderr
    assert r.returncode in (case.agent_exit or (case.exit,)), r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("airlock-agent: error: "), r.stderr
    assert (case.agent_error or case.error) in lines[0]
    assert listing(tmp_path, skip={"site/root/journal.jsonl", "site/root/staging"}) == before
    assert list((root / "staging").iterdir()) == []
    journal = Journal(root / "journal.jsonl")
    assert journal.verify() > journal_lines  # the refusal is on record, the chain intact
    check = run_agent("--root", root, "check")
    assert check.returncode == 0, check.stderr
    assert f"vision-{ACTIVE_SEQUENCE}" in check.stdout
