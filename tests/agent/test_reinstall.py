"""The same stick twice: a bundle of the active release is still read whole; exit 0 only when
it is intact, exit 3 for a corrupt or short copy, and it repairs the store from the stick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_agent
from tests.support.device import agent_json, assert_consistent, copy_device, init_device
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec
from tests.support.treehash import tree_hash


@pytest.fixture(scope="module")
def installed(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A device running vision-1 (a 1 MiB model), and the bundle it came from."""
    work = tmp_path_factory.mktemp("reinstall")
    bundle = build(write_spec(work, sequence=1, pad_mb=1), work / "vision-1.airlock",
                   [keyset.release_key])
    device = init_device(work / "device", keyset)
    agent_json(device, "install", bundle)
    return device, bundle


@pytest.fixture
def device(installed: tuple[Path, Path], tmp_path: Path) -> Path:
    return copy_device(installed[0], tmp_path / "device")


def _model_blob(device: Path) -> Path:
    release = json.loads((device / "releases/vision-1/release.json").read_text())
    return device / "blobs/sha256" / release["signed"]["airlock"]["models"][0]["blob"][7:]


def test_a_good_copy_is_read_whole_and_said_intact(device: Path,
                                                   installed: tuple[Path, Path]) -> None:
    before = tree_hash(device)
    result = agent_json(device, "install", installed[1])
    assert result["installed"] is False and result["verified"] is True
    assert "already active; the bundle is intact" in result["message"]
    assert result["files_checked"] >= 5 and result["repaired"] == []
    assert tree_hash(device) == before


@pytest.mark.parametrize("damage", ["flipped-byte", "short"])
def test_a_corrupt_or_short_copy_of_the_active_release_is_exit_3(
        damage: str, device: Path, installed: tuple[Path, Path], tmp_path: Path) -> None:
    data = bytearray(installed[1].read_bytes())
    if damage == "short":
        data = data[:600_000]  # the copy stopped inside the 1 MiB model
    else:
        data[-200_000] ^= 0x01
    bad = tmp_path / "copy.airlock"
    bad.write_bytes(bytes(data))
    before = tree_hash(device)
    p = run_agent("--root", device, "install", bad)
    assert p.returncode == 3, p.stderr
    if damage == "short":
        # The expected and the actual byte counts, and what to do.
        assert "has 600000 bytes" in p.stderr and "need at least 10" in p.stderr
        assert "copy it again" in p.stderr
    else:
        assert "sha256" in p.stderr
    assert tree_hash(device) == before


@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
def test_a_good_copy_repairs_a_damaged_store_blob(
        damage: str, device: Path, installed: tuple[Path, Path]) -> None:
    blob = _model_blob(device)
    if damage == "deleted":
        blob.unlink()
    else:  # in place: the release's hard link shares the damaged bytes
        blob.chmod(0o644)
        with blob.open("r+b") as f:
            f.seek(500)
            f.write(b"\xff\xff")
    assert run_agent("--root", device, "fsck").returncode == 3
    result = agent_json(device, "install", installed[1])
    assert result["repaired"] == ["sha256:" + blob.name]
    assert "restored 1 store blob(s)" in result["message"]
    assert any(p.endswith("models/detector/model.onnx") for p in result["relinked"])
    fsck = run_agent("--root", device, "fsck", "--json")
    assert fsck.returncode == 0, fsck.stdout
    status = assert_consistent(device)  # model file and store blob are one inode again
    assert status["active"]["id"] == "vision-1"
    assert run_agent("--root", device, "check").returncode == 0
    verified = [e for e in agent_json(device, "history")["entries"]
                if e["event"] == "reinstall-verified"]
    assert verified and verified[-1]["repaired"] == result["repaired"]


def test_fsck_repair_keeps_releases_their_bundle_restores(keyset: Keys, tmp_path: Path) -> None:
    # vision-1 and vision-2 share their model blob: one corrupt blob breaks both.
    v1 = build(write_spec(tmp_path, sequence=1), tmp_path / "vision-1.airlock",
               [keyset.release_key])
    v2 = build(write_spec(tmp_path, sequence=2), tmp_path / "vision-2.airlock",
               [keyset.release_key])
    device = init_device(tmp_path / "device", keyset)
    agent_json(device, "install", v1)
    agent_json(device, "install", v2)
    blob = _model_blob(device)
    blob.chmod(0o644)
    with blob.open("r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff")
    repair = run_agent("--root", device, "fsck", "--repair", "--json")
    assert repair.returncode == 3  # the active release needs its bundle: a person's step
    out = json.loads(repair.stdout)
    said = "\n".join(out["repaired"]) + json.dumps(out["problems"])
    assert "install the same bundle again (vision-2" in said, said
    assert "higher sequence" in said and said.index("same bundle") < said.index("higher")
    assert [r["release"] for r in out["incomplete"]] == ["vision-1"]
    # Both releases are still there, previous still points at vision-1: nothing to rebuild.
    assert sorted(p.name for p in (device / "releases").iterdir()) == ["vision-1", "vision-2"]
    assert (device / "previous").resolve().name == "vision-1"
    # Re-inserting the same stick restores the blob, and with it both releases.
    assert agent_json(device, "install", v2)["active"] == "vision-2"
    fsck = agent_json(device, "fsck")
    assert fsck["ok"] and fsck["incomplete"] == []
    assert agent_json(device, "rollback")["active"] == "vision-1"
    assert_consistent(device)


def test_check_says_health_check_failed_once(device: Path) -> None:
    blob = _model_blob(device)
    model = device / "releases/vision-1/models/detector/model.onnx"
    blob.chmod(0o644)
    blob.write_bytes(b"not a model")  # same inode as the release's model file
    assert model.read_bytes() == b"not a model"
    p = run_agent("--root", device, "check")
    assert p.returncode == 4, p.stderr
    assert p.stderr.count("health check") == 1, p.stderr
    assert "vision-1" in p.stderr and "airlock-agent rollback" in p.stderr
