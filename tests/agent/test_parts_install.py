"""Split media end to end: `airlock split`, `join`, `build --max-size`, and the agent installing
straight from the parts (part 1, parts.json, a directory, `cat … |`); bad parts are exit 3
naming the part, and change nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import run_agent, run_airlock, tool_env
from tests.support.device import agent_json, assert_consistent, init_device
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec
from tests.support.treehash import tree_hash

PART = "64KiB"  # a 1 MiB model makes about 17 parts


@pytest.fixture(scope="module")
def split_bundle(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle (1 MiB model) and its parts of 64 KiB, made by `airlock split`."""
    work = tmp_path_factory.mktemp("split")
    bundle = build(write_spec(work, sequence=1, pad_mb=1), work / "vision-1.airlock",
                   [keyset.release_key])
    p = run_airlock("split", bundle, "--max-size", PART, "--json")
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)["parts"]) > 10
    return bundle


@pytest.fixture
def media(split_bundle: Path, tmp_path: Path) -> Path:
    """A fresh copy of the parts on a "stick" (no whole bundle on it), to damage at will."""
    stick = tmp_path / "stick"
    stick.mkdir()
    for p in split_bundle.parent.glob(split_bundle.name + ".part*"):
        shutil.copy(p, stick)
    shutil.copy(split_bundle.with_name(split_bundle.name + ".parts.json"), stick)
    return stick


def _parts(stick: Path) -> list[Path]:
    return sorted(stick.glob("*.part[0-9][0-9][0-9]"))


def _part(stick: Path, n: int) -> Path:
    """Part ``n`` (1-based; -1 is the last)."""
    return _parts(stick)[-1] if n == -1 else stick / f"vision-1.airlock.part{n:03d}"


@pytest.mark.parametrize("how", ["part001", "parts.json", "directory", "cat"])
def test_install_straight_from_the_parts(how: str, media: Path, tmp_path: Path,
                                         keyset: Keys) -> None:
    device = init_device(tmp_path / "device", keyset)
    if how == "cat":
        # What the docs tell a technician with a shell: the parts in name order are the bundle.
        cat = subprocess.Popen(["cat", *map(str, _parts(media))], stdout=subprocess.PIPE)
        p = subprocess.run([sys.executable, "-m", "agent", "--root", str(device), "install", "-",
                            "--json"], stdin=cat.stdout, capture_output=True, text=True,
                           env=tool_env())
        assert cat.wait() == 0
        assert p.returncode == 0, p.stderr
        result = json.loads(p.stdout)
    else:
        source = {"part001": _part(media, 1), "parts.json": media / "vision-1.airlock.parts.json",
                  "directory": media}[how]
        result = agent_json(device, "install", source)
    assert result["installed"] and result["active"] == "vision-1"
    assert not list(media.glob("*.airlock")), "nothing was joined on the stick"
    assert_consistent(device)


def _swap(a: Path, b: Path) -> None:
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


DAMAGE = {
    # what is done to the stick, the part the error must name, and words it must use
    "missing": (lambda s: _part(s, 5).unlink(), 5, "missing"),
    "swapped": (lambda s: _swap(_part(s, 5), _part(s, 6)), 5, "out of order"),
    "corrupt": (lambda s: _flip(_part(s, 9), 30_000), 9, "corrupt"),
    "short": (lambda s: _truncate(_part(s, 7), 1000), 7, "copy it again"),
    "corrupt-last": (lambda s: _flip(_part(s, -1), -10), -1, "corrupt"),
}


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_bad_part_is_exit_3_naming_it_and_changes_nothing(
        damage: str, media: Path, tmp_path: Path, keyset: Keys) -> None:
    device = init_device(tmp_path / "device", keyset)
    do, number, words = DAMAGE[damage]
    do(media)
    name = _part(media, number).name
    before = tree_hash(device)
    p = run_agent("--root", device, "install", _part(media, 1))
    assert p.returncode == 3, p.stderr
    assert name in p.stderr and words in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert tree_hash(device) == before
    # The host side says the same before anyone walks to the site.
    v = run_airlock("verify", media, "--trust", keyset.trust)
    assert v.returncode == 3 and name in v.stderr, v.stderr


def test_build_max_size_writes_parts_that_join_to_the_whole_bundle(
        tmp_path: Path, keyset: Keys) -> None:
    spec = write_spec(tmp_path, sequence=1, pad_mb=1)
    env = {"SOURCE_DATE_EPOCH": "1900000000"}  # the same expiry for both builds
    whole, split = tmp_path / "whole/vision-1.airlock", tmp_path / "split/vision-1.airlock"
    for out, extra in ((whole, []), (split, ["--max-size", "100K"])):
        p = run_airlock("build", spec, "--key", keyset.release_key, "-o", out, *extra, env=env)
        assert p.returncode == 0, p.stderr
    assert not split.exists(), "--max-size never writes the bundle whole"
    manifest = json.loads(split.with_name("vision-1.airlock.parts.json").read_text())
    assert all(p["size"] <= 100_000 for p in manifest["parts"]) and len(manifest["parts"]) > 10
    assert manifest["size"] == whole.stat().st_size
    joined = tmp_path / "joined.airlock"
    p = run_airlock("join", split.with_name("vision-1.airlock.part001"), "-o", joined)
    assert p.returncode == 0, p.stderr
    assert joined.read_bytes() == whole.read_bytes()
    v = run_airlock("verify", split.with_name("vision-1.airlock.parts.json"), "--trust",
                    keyset.trust, "--json")
    assert v.returncode == 0 and json.loads(v.stdout)["ok"], v.stderr


def test_join_refuses_a_corrupt_part_and_leaves_no_file(media: Path, tmp_path: Path) -> None:
    _flip(_part(media, 3), 100)
    out = tmp_path / "joined.airlock"
    p = run_airlock("join", media, "-o", out)
    assert p.returncode == 3 and "part003" in p.stderr, p.stderr
    assert not out.exists() and not list(tmp_path.glob(".joined*"))


def test_split_refuses_what_is_not_a_bundle_and_bad_sizes(tmp_path: Path,
                                                          split_bundle: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"hello" * 1000)
    p = run_airlock("split", junk, "--max-size", "1K")
    assert p.returncode == 3 and not list(tmp_path.glob("notes.txt.part*")), p.stderr
    for size in ("12 parsecs", "0", "-5M"):
        p = run_airlock("split", split_bundle, "--max-size", size)
        assert p.returncode == 2 and "size" in p.stderr, (size, p.stderr)
    p = run_airlock("split", split_bundle, "--max-size", "1000")
    assert p.returncode == 2 and "more than 999 parts" in p.stderr, p.stderr


@pytest.mark.parametrize("beside", ["whole", "another-split"])
def test_a_directory_with_more_than_one_bundle_is_refused_name_one(
        beside: str, media: Path, split_bundle: Path, tmp_path: Path, keyset: Keys) -> None:
    # A whole bundle beside the split one (or a second split set) on the same stick.
    if beside == "whole":
        shutil.copy(split_bundle, media / "vision-2.airlock")
    else:
        for p in list(media.glob("vision-1.airlock.part*")):
            shutil.copy(p, media / p.name.replace("vision-1", "vision-9"))
    device = init_device(tmp_path / "device", keyset)
    p = run_agent("--root", device, "install", media)
    assert p.returncode == 2, p.stderr
    assert "name one" in p.stderr and "vision-1.airlock" in p.stderr
    assert ("vision-2.airlock" if beside == "whole" else "vision-9.airlock") in p.stderr
    assert agent_json(device, "status")["active"] is None
