"""``airlock-agent fsck [--repair]`` finds and repairs what a site can break.

A device with three releases (vision-4 old, vision-5 previous, vision-6
current) is damaged in one way per test; fsck must name the damage (exit 3),
``--repair`` must fix what can be fixed (exit 0) and leave a device whose
active release passes its health check, or say what is left (exit 3).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli import run_agent
from tests.support.device import copy_device
from tests.support.kit import Kit
from tests.support.tarsurgery import bundle


@pytest.fixture(scope="module")
def three(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fsck")
    root = d / "root"
    assert run_agent("--root", root, "init", "--trust", kit.trust_path,
                     "--device-id", "cam").returncode == 0
    for n, data in enumerate([kit.active, kit.good,
                              bundle(kit.other_release_json, kit.other_files)]):
        (d / f"{n}.airlock").write_bytes(data)
        r = run_agent("--root", root, "install", d / f"{n}.airlock")
        assert r.returncode == 0, r.stderr
    return root


@pytest.fixture
def root(three: Path, tmp_path: Path) -> Path:
    return copy_device(three, tmp_path / "root")


def _fsck(root: Path, *args: str) -> tuple[int, dict, str]:
    r = run_agent("--root", root, "fsck", "--json", *args)
    assert "Traceback" not in r.stderr
    return r.returncode, json.loads(r.stdout), r.stderr


def _model_blob(root: Path, release: str) -> Path:
    meta = json.loads((root / "releases" / release / "release.json").read_bytes())
    return root / "blobs" / "sha256" / meta["signed"]["airlock"]["models"][0]["blob"][7:]


def _damage(path: Path) -> None:
    os.chmod(path, 0o644)
    with path.open("r+b") as f:
        f.write(b"\xff")


def test_clean_device(root: Path) -> None:
    code, report, _ = _fsck(root)
    assert code == 0 and report["ok"]
    assert report["checked"]["releases"] == 3 and report["checked"]["blobs"] > 5
    human = run_agent("--root", root, "fsck")
    assert human.returncode == 0 and "consistent" in human.stdout


def test_corrupt_blob_of_old_release(root: Path) -> None:
    blob = _model_blob(root, "vision-4")
    _damage(blob)
    code, report, err = _fsck(root)
    assert code == 3 and blob.name in err and "fsck --repair" in err
    kinds = {(p["kind"], p["path"]) for p in report["problems"]}
    assert ("corrupt-blob", f"blobs/sha256/{blob.name}") in kinds
    assert [r["release"] for r in report["incomplete"]] == ["vision-4"]
    code, report, _ = _fsck(root, "--repair")
    assert code == 0, report
    # The corrupt blob goes; the release stays: its own bundle restores it.
    assert any(line.startswith("kept vision-4") and "install the same bundle again" in line
               for line in report["repaired"]), report["repaired"]
    assert not blob.exists() and (root / "releases" / "vision-4").is_dir()
    assert [r["release"] for r in report["incomplete"]] == ["vision-4"]
    assert run_agent("--root", root, "check").returncode == 0


def test_corrupt_active_release_falls_back_to_previous(root: Path) -> None:
    _damage(_model_blob(root, "vision-6"))
    code, report, _ = _fsck(root, "--repair")
    assert code == 0, report
    assert any("back to vision-5" in line for line in report["repaired"])
    check = run_agent("--root", root, "check")
    assert check.returncode == 0 and "vision-5" in check.stdout


def test_leftovers_foreign_files_and_dangling_link(root: Path) -> None:
    (root / "staging" / "blob-abc.part").write_bytes(b"half")
    (root / "blobs" / "sha256" / "notes.txt").write_text("hi")
    os.remove(root / "previous")
    os.symlink("releases/vision-99", root / "previous")
    code, report, _ = _fsck(root)
    assert code == 3
    kinds = {p["kind"] for p in report["problems"]}
    assert {"staging-leftover", "foreign-file", "dangling-link"} <= kinds
    code, report, _ = _fsck(root, "--repair")
    assert code == 0, report
    assert list((root / "staging").iterdir()) == []
    assert not (root / "blobs" / "sha256" / "notes.txt").exists()


def test_broken_journal_is_reported_not_rewritten(root: Path) -> None:
    journal = root / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"event":"', b'"event":"x')
    journal.write_bytes(b"".join(lines))
    code, _report, err = _fsck(root, "--repair")
    assert code == 3 and "journal line 3 does not chain" in err
    assert journal.read_bytes().startswith(b"".join(lines))  # evidence kept


def test_busy_device_exits_5(root: Path) -> None:
    from agent.lock import AgentLock

    with AgentLock(root / "lock"):
        r = run_agent("--root", root, "fsck")
    assert r.returncode == 5 and "lock" in r.stderr, r.stderr
