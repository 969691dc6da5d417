"""The journal does not grow forever: it is sealed into named segments, the oldest
dropped, and the hash chain, ``history``, ``fsck`` and the counts carry on across
every cut, a kill in the middle of a rotation included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.journal import Journal
from agent.layout import Layout
from agent.observe.report import report_body
from agent.observe.tally import JournalTally
from tests.support.cli import REPO, run_agent, tool_env
from tests.support.device import agent_json, init_device
from tests.support.keyset import Keys

SEGMENT = 2048
KEEP = 2


def _fill(journal: Journal, n: int) -> None:
    """n actions: every third a refused bundle, the rest installs."""
    for i in range(n):
        if i % 3 == 0:
            journal.append("rejected", bundle=f"/media/b{i}.airlock", reason="bad signature",
                           error="SignatureError")
        else:
            journal.append("installed", release=f"vision-{i}", previous=None)


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("journal"))


def test_the_journal_is_bounded_and_still_verifies_and_counts(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl", segment_bytes=SEGMENT, keep_segments=KEEP)
    _fill(journal, 300)
    names = _files(tmp_path)
    assert names[-1] == "journal.jsonl" and len(names) <= KEEP + 1, names
    assert all(n.startswith("journal-") for n in names[:-1])
    total = sum((tmp_path / n).stat().st_size for n in names)
    assert total < (KEEP + 2) * SEGMENT, total  # 300 lines would be ~45 KiB
    first = journal.first_line()
    assert first > 1 and names[0] == f"journal-{first:09d}.jsonl"
    kept = journal.verify()
    numbered = list(journal.numbered_lines())
    assert len(numbered) == kept and numbered[0][0] == first
    # Lines are numbered as if nothing had been dropped: as in a journal that keeps all.
    everything = Journal(tmp_path / "all" / "journal.jsonl", segment_bytes=SEGMENT,
                         keep_segments=10**6)
    everything.path.parent.mkdir()
    _fill(everything, 300)
    assert everything.first_line() == 1 and everything.verify() == numbered[-1][0]
    tail = [e["event"] for e in everything.entries()][first - 1:]
    assert [e["event"] for e in journal.entries()] == tail
    tally = JournalTally(journal.path)
    tally.update()
    assert tally.installs == {"installed": 200, "rejected": 100}
    assert tally.rejected == {"signature": 100}


def test_an_incremental_tally_keeps_counting_across_rotations(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl", segment_bytes=SEGMENT, keep_segments=KEEP)
    tally = JournalTally(journal.path)
    for _ in range(10):
        _fill(journal, 30)
        tally.update()
    assert sum(tally.installs.values()) == 300 and tally.rejected["signature"] == 100


def test_an_edit_or_a_missing_segment_breaks_the_chain(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl", segment_bytes=SEGMENT, keep_segments=5)
    _fill(journal, 60)
    sealed = journal.sealed()
    assert len(sealed) >= 3
    middle = sealed[1][1]
    data = middle.read_bytes()
    middle.write_bytes(data.replace(b"vision-", b"vision-9", 1))
    with pytest.raises(Exception, match=f"does not chain.*|{middle.name}"):
        journal.verify()
    middle.unlink()
    with pytest.raises(Exception, match="a segment is missing"):
        journal.verify()


def test_history_status_fsck_and_report_span_the_segments(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    journal = Journal(root / "journal.jsonl", segment_bytes=SEGMENT, keep_segments=KEEP)
    _fill(journal, 150)
    history = agent_json(root, "history", "--verify")
    assert history["verified"] and len(history["segments"]) == KEEP + 1
    assert history["first_line"] == journal.first_line() > 1
    assert history["lines"] == len(history["entries"])
    text = run_agent("--root", root, "history", "--verify").stdout
    assert f"in {KEEP + 1} segments, from line {journal.first_line()}" in text
    assert run_agent("--root", root, "fsck").returncode == 0
    body, end = report_body(Layout(root), since="all")
    assert body["counts"]["installs"] == {"installed": 100, "rejected": 50}
    assert body["journal"]["from_line"] == journal.first_line()
    assert end["line"] == body["journal"]["to_line"] == list(journal.numbered_lines())[-1][0]
    # A segment removed from the middle: fsck and history --verify say so (exit 3).
    journal.sealed()[-1][1].unlink()
    p = run_agent("--root", root, "fsck")
    assert p.returncode == 3 and "a segment is missing" in p.stdout + p.stderr, p.stdout + p.stderr
    assert run_agent("--root", root, "history", "--verify").returncode == 3


_CRASHER = """
import sys
from pathlib import Path
from agent.journal import Journal
j = Journal(Path(sys.argv[1]), segment_bytes=2048, keep_segments=2)
for i in range(100):
    j.append("installed", release=f"vision-{i}", previous=None)
"""


def test_a_kill_in_the_middle_of_a_rotation_leaves_a_journal_that_verifies(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    env = tool_env({"AIRLOCK_CRASH_AT": "journal-mid-rotation:2"})
    p = subprocess.run([sys.executable, "-c", _CRASHER, str(path)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == -9, p.stderr
    assert not path.exists() and len(Journal(path).sealed()) == 2  # killed between the two steps
    journal = Journal(path, segment_bytes=SEGMENT, keep_segments=KEEP)
    before = journal.verify()
    journal.append("installed", release="after", previous=None)
    assert journal.verify() == before + 2  # the rotation line, then the entry
    entries = list(journal.entries())
    assert [e["event"] for e in entries[-2:]] == ["journal-rotated", "installed"]
    tally = JournalTally(path)
    tally.update()
    # Every install the killed process journaled is counted, dropped segments included.
    written = int(entries[-3]["release"].removeprefix("vision-")) + 1
    assert tally.installs["installed"] == written + 1


def test_a_good_install_keeps_only_the_last_releases(
        tmp_path: Path, keyset: Keys, make_bundle: Callable[..., Path]) -> None:
    root = init_device(tmp_path / "device", keyset)
    for seq in range(1, 6):
        p = run_agent("--root", root, "install", make_bundle(sequence=seq))
        assert p.returncode == 0, p.stderr
    # Default 3: the newest three (current and previous among them), without a gc.
    assert sorted(os.listdir(root / "releases")) == ["vision-3", "vision-4", "vision-5"]
    collected = [e for e in agent_json(root, "history")["entries"] if e["event"] == "gc"]
    assert [e["releases_removed"] for e in collected] == [["vision-1"], ["vision-2"]]
    assert all(e["automatic"] and e["keep"] == 3 for e in collected)
    settings = agent_json(root, "config", "--keep-releases", "1")
    assert settings["keep_releases"] == 1 and settings["changed"] == ["keep releases: 3 -> 1"]
    assert run_agent("--root", root, "config", "--keep-releases", "-1").returncode == 2
    p = run_agent("--root", root, "install", make_bundle(sequence=6), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["collected"]["releases_removed"] == ["vision-4", "vision-3"]
    # Never current nor previous: keep 1 still leaves something to roll back to.
    assert sorted(os.listdir(root / "releases")) == ["vision-5", "vision-6"]
    assert run_agent("--root", root, "rollback").returncode == 0
