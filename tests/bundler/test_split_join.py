"""``airlock split -o DIR`` puts the parts straight onto the stick; ``join`` names the bundle itself."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_airlock
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec


def test_split_into_a_directory_then_join_without_naming_the_output(
        keyset: Keys, tmp_path: Path) -> None:
    work, stick, desk = tmp_path / "work", tmp_path / "stick", tmp_path / "desk"
    for d in (work, stick, desk):
        d.mkdir()
    bundle = build(write_spec(work), work / "vision-1.airlock", [keyset.release_key])
    r = run_airlock("split", bundle, "--max-size", "16KiB", "-o", stick, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["manifest"] == str(stick / "vision-1.airlock.parts.json")
    assert not list(work.glob("*.part*")), "nothing beside the bundle"
    assert (stick / "vision-1.airlock.part001").is_file()

    j = run_airlock("join", stick / "vision-1.airlock.part001", cwd=desk)
    assert j.returncode == 0, j.stderr
    assert (desk / "vision-1.airlock").read_bytes() == bundle.read_bytes()
    assert "vision-1.airlock" in j.stdout


def test_split_into_a_missing_directory_is_exit_2(keyset: Keys, tmp_path: Path) -> None:
    bundle = build(write_spec(tmp_path), tmp_path / "v.airlock", [keyset.release_key])
    r = run_airlock("split", bundle, "-o", tmp_path / "nowhere")
    assert r.returncode == 2 and "not a directory" in r.stderr
    assert not list(tmp_path.glob("*.part*"))
