"""A hostile `BUNDLE.parts.json` (it is unsigned: anyone with the stick can write one) is refused
with exit 3 before a part is read: no path of it reaches open(), no endless data, no devices."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airlock.errors import FormatError
from airlock.format.parts import PartSet, PartsReader, resolve_media
from airlock.limits import MAX_PARTS, MAX_PARTS_MANIFEST_BYTES
from tests.support.cli import run_agent
from tests.support.device import init_device
from tests.support.keyset import Keys
from tests.support.treehash import tree_hash


def _stick(tmp_path: Path, data: bytes = b"x" * 3000, size: int = 1000) -> Path:
    """Three honest parts of ``data`` and their parts.json; returns the manifest."""
    parts = []
    for i in range(0, len(data), size):
        name = f"b.airlock.part{i // size + 1:03d}"
        (tmp_path / name).write_bytes(data[i : i + size])
        parts.append({"name": name, "size": len(data[i : i + size]),
                      "sha256": hashlib.sha256(data[i : i + size]).hexdigest()})
    doc = {"airlock_parts": 1, "bundle": "b.airlock", "size": len(data),
           "sha256": hashlib.sha256(data).hexdigest(), "parts": parts}
    manifest = tmp_path / "b.airlock.parts.json"
    manifest.write_text(json.dumps(doc))
    return manifest


def _edit(manifest: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(manifest.read_text())
    change(doc)
    manifest.write_text(json.dumps(doc))


def _dotdot(doc: dict[str, Any]) -> None:
    doc["parts"][0]["name"] = "../../etc/passwd"


def _absolute(doc: dict[str, Any]) -> None:
    doc["parts"][0]["name"] = "/etc/passwd"


def _renamed(doc: dict[str, Any]) -> None:
    doc["parts"][0]["name"] = "b.airlock.part002"


def _bundle_path(doc: dict[str, Any]) -> None:
    doc["bundle"] = "../b.airlock"


def _too_many(doc: dict[str, Any]) -> None:
    doc["parts"] = doc["parts"] * (MAX_PARTS // 3 + 1)


def _sum(doc: dict[str, Any]) -> None:
    doc["size"] += 1


def _types(doc: dict[str, Any]) -> None:
    doc["parts"][1]["size"] = "1000"


def _bool(doc: dict[str, Any]) -> None:
    doc["parts"][1]["size"] = True


CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "dotdot-name": (_dotdot, "plain file name"),
    "absolute-name": (_absolute, "plain file name"),
    "names-out-of-order": (_renamed, "expected 'b.airlock.part001'"),
    "bundle-with-path": (_bundle_path, "plain file name"),
    "too-many-parts": (_too_many, f"1 to {MAX_PARTS}"),
    "sizes-do-not-add-up": (_sum, "add up"),
    "size-is-text": (_types, "not an integer"),
    "size-is-bool": (_bool, "not an integer"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_parts_list_is_refused(case: str, tmp_path: Path) -> None:
    manifest = _stick(tmp_path)
    change, words = CASES[case]
    _edit(manifest, change)
    with pytest.raises(FormatError, match=words):
        resolve_media(manifest)


def test_endless_or_garbage_parts_list_is_refused_before_parsing(tmp_path: Path) -> None:
    manifest = _stick(tmp_path)
    with manifest.open("wb") as f:
        f.truncate(MAX_PARTS_MANIFEST_BYTES + 1)
    with pytest.raises(FormatError, match="larger than"):
        resolve_media(manifest)
    manifest.write_bytes(b"[" * 100_000)
    with pytest.raises(FormatError, match="not valid JSON"):
        resolve_media(manifest)


def test_a_part_that_is_a_device_or_fifo_is_refused_without_reading(tmp_path: Path) -> None:
    manifest = _stick(tmp_path)
    part = tmp_path / "b.airlock.part002"
    part.unlink()
    part.symlink_to("/dev/zero")
    with pytest.raises(FormatError, match="not a regular file"):
        resolve_media(manifest)
    part.unlink()
    os.mkfifo(part)  # open() of a FIFO would block the agent while it holds its lock
    with pytest.raises(FormatError, match="not a regular file"):
        resolve_media(manifest)


def test_reader_hashes_every_byte_once_whatever_the_seeks(tmp_path: Path) -> None:
    """Forward seeks hash what they skip, backward seeks re-read without hashing twice."""
    data = os.urandom(3000)
    found = resolve_media(_stick(tmp_path, data))
    assert isinstance(found, PartSet)
    with PartsReader(found) as r:
        assert r.read(10) == data[:10]
        r.seek(2500)  # skips the rest of part 1 and all of part 2: both hashed on the way
        assert r.read(100) == data[2500:2600]
        r.seek(5)
        assert r.read(1000) == data[5:1005]
        r.verify_rest()
    (tmp_path / "b.airlock.part002").write_bytes(b"y" * 1000)
    with PartsReader(found) as r, pytest.raises(FormatError, match=r"part002 .* is corrupt"):
        r.seek(2500)
        r.read(1)


def test_agent_refuses_a_hostile_parts_list_with_exit_3(tmp_path: Path, keyset: Keys) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    manifest = _stick(stick)
    _edit(manifest, _dotdot)
    device = init_device(tmp_path / "device", keyset)
    before = tree_hash(device)
    p = run_agent("--root", device, "install", manifest)
    assert p.returncode == 3 and "plain file name" in p.stderr, p.stderr
    assert tree_hash(device) == before
