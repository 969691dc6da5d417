"""airlock.files: atomic replacement and exclusive partial files, as both sides write them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airlock.files import PartialFile, write_atomic


def _partials(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "config.yaml"
    target.write_bytes(b"old")
    write_atomic(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert _partials(tmp_path) == []


def test_write_atomic_replaces_a_link_at_its_temporary_name_without_following_it(
        tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / ".config.yaml.tmp").symlink_to(victim)
    write_atomic(tmp_path / "config.yaml", b"new")
    assert victim.read_bytes() == b"precious"
    assert (tmp_path / "config.yaml").read_bytes() == b"new"
    assert _partials(tmp_path) == []


def test_partial_is_published_whole_over_the_target(tmp_path: Path) -> None:
    target = tmp_path / "vision.airlock"
    target.write_bytes(b"old bundle")
    with PartialFile(target) as partial:
        assert partial.path.parent == tmp_path and partial.path.name.endswith(".partial")
        partial.file.write(b"new ")
        assert target.read_bytes() == b"old bundle"  # nothing shows before publish
        partial.file.write(b"bundle")
        partial.publish()
    assert target.read_bytes() == b"new bundle"
    assert _partials(tmp_path) == []


def test_a_fixed_partial_name_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    planted = tmp_path / ".out.bin.partial"
    planted.symlink_to(victim)
    with PartialFile(tmp_path / "out.bin", name=planted.name) as partial:
        assert not partial.path.is_symlink()
        partial.file.write(b"ours")
        partial.publish()
    assert victim.read_bytes() == b"precious"
    assert (tmp_path / "out.bin").read_bytes() == b"ours"
    assert not planted.exists() and not planted.is_symlink()


def test_a_leftover_partial_of_our_own_is_replaced_not_appended_to(tmp_path: Path) -> None:
    (tmp_path / ".out.bin.partial").write_bytes(b"half of an earlier run" * 100)
    with PartialFile(tmp_path / "out.bin", name=".out.bin.partial") as partial:
        partial.file.write(b"whole")
        partial.publish()
    assert (tmp_path / "out.bin").read_bytes() == b"whole"


def test_the_partial_is_created_exclusively_even_against_a_race(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Someone plants a link between our unlink and our open: the open refuses, never follows.
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    real_unlink = os.unlink

    def unlink_then_plant(name: str, *, dir_fd: int | None = None) -> None:
        real_unlink(name, dir_fd=dir_fd)
        os.symlink(victim, name, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink_then_plant)
    (tmp_path / ".out.bin.partial").write_bytes(b"")
    with pytest.raises(FileExistsError):
        PartialFile(tmp_path / "out.bin", name=".out.bin.partial")
    assert victim.read_bytes() == b"precious"


def test_no_partial_is_left_after_a_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), PartialFile(target) as partial:
        partial.file.write(b"half")
        raise RuntimeError("the build failed")
    with pytest.raises(RuntimeError), PartialFile(target, name=".out.bin.partial") as partial:
        partial.file.write(b"half")
        raise RuntimeError("the split failed")
    assert target.read_bytes() == b"old"
    assert _partials(tmp_path) == []


def test_a_random_partial_name_is_retried_on_a_clash(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = iter(["aaaaaaaa", "aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr("airlock.files.secrets.token_hex", lambda n: next(tokens))
    target = tmp_path / "out.bin"
    with PartialFile(target) as first, PartialFile(target) as second:
        assert first.path.name == ".out.bin.aaaaaaaa.partial"
        assert second.path.name == ".out.bin.bbbbbbbb.partial"
    assert _partials(tmp_path) == []
