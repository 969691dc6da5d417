"""Exactly once in the drop folder, keyed by what a drop carries, verified (issue 24 class 4).

A copy of a release the operator rolled back, with one extra blank in its
JSON (new bytes, same signature), is not installed again by ``serve``; an
explicit ``airlock-agent install`` of it is. A bogus carried ``root.json``
paired with the next release's genuine metadata is refused, and that refusal
does not make the genuine release "already rejected".
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from airlock.format.bundle import BundleReader
from tests.support.device import active_id, agent_json, init_device
from tests.support.keyset import Keys
from tests.support.kit import _split
from tests.support.serve import Serve
from tests.support.spec import build, write_spec
from tests.support.tarsurgery import bundle


@pytest.fixture(scope="module")
def releases(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("identity-bundles")
    out = {}
    for name, seq, scale in (("v1", 1, 2.0), ("v2", 2, 3.0), ("v3", 3, 4.0)):
        out[name] = build(write_spec(d / name, sequence=seq, scale=scale), d / f"{name}.airlock",
                          [keyset.release_key])
    return out


def _with_a_blank(src: Path, dst: Path) -> Path:
    """The same bundle, one extra blank inside its signed JSON: other bytes, same signature."""
    data = bytearray(src.read_bytes())
    with src.open("rb") as f:
        head = BundleReader(f).head()
    at, size = head.slot_offset, head.slot_size
    text = bytes(data[at:at + size]).rstrip(b" \n")
    assert text.startswith(b"{") and len(text) < size
    new = b"{ " + text[1:]
    data[at:at + size] = new + b" " * (size - len(new))
    dst.write_bytes(bytes(data))
    return dst


def _outcome(stick: Path, name: str) -> dict[str, object]:
    return json.loads((stick / f"{name}.result.json").read_text())  # type: ignore[no-any-return]


def test_serve_never_reinstalls_what_the_operator_rolled_back(
        tmp_path: Path, keyset: Keys, releases: dict[str, Path]) -> None:
    root = init_device(tmp_path / "dev", keyset)
    stick = tmp_path / "stick"
    stick.mkdir()
    with Serve.start(root, watch=[stick]) as s:
        shutil.copy(releases["v1"], stick / "v1.airlock")
        assert s.wait_event("drop-result", drop=str(stick / "v1.airlock"))["outcome"] == "installed"
        shutil.copy(releases["v2"], stick / "v2.airlock")
        assert s.wait_event("drop-result", drop=str(stick / "v2.airlock"))["outcome"] == "installed"
    rolled = agent_json(root, "rollback")
    assert rolled["active"] == "vision-1"
    journal = [json.loads(line) for line in (root / "journal.jsonl").read_text().splitlines()]
    assert [e for e in journal if e["event"] == "operator-rollback"][-1]["release"] == "vision-2"

    # Another copy with one more blank, under another name; and a memory that forgot.
    (root / "drops.json").unlink()
    copy = _with_a_blank(releases["v2"], stick / "again.airlock")
    with Serve.start(root, watch=[stick]) as s:
        e = s.wait_event("drop-result", drop=str(copy))
        assert e["outcome"] in ("skipped", "rejected"), e
        assert "rolled back by an operator" in str(e["message"])
    assert active_id(root) == "vision-1"

    # Only an explicit install brings it back; a later copy on the stick is then left alone.
    assert agent_json(root, "install", copy)["active"] == "vision-2"
    assert active_id(root) == "vision-2"
    assert "vision-2" not in json.loads((root / "rolled-back.json").read_text())


def test_a_failed_check_is_not_an_operator_rollback(tmp_path: Path, keyset: Keys,
                                                    releases: dict[str, Path]) -> None:
    root = init_device(tmp_path / "dev", keyset)
    agent_json(root, "install", releases["v1"])
    agent_json(root, "install", releases["v2"], "--hold", "0.1")
    time.sleep(0.3)
    agent_json(root, "gc")  # the expired hold is reverted by the next change
    assert active_id(root) == "vision-1"
    assert not (root / "rolled-back.json").exists()


def test_a_bogus_root_does_not_make_the_genuine_release_rejected(
        tmp_path: Path, keyset: Keys, releases: dict[str, Path]) -> None:
    root = init_device(tmp_path / "dev", keyset)
    agent_json(root, "install", releases["v1"])
    release_json, files = _split(releases["v3"].read_bytes())
    trusted = json.loads((root / "trust" / "root.json").read_text())
    trusted["signed"]["version"] += 1  # a "rotated" root nobody signed
    bogus = bundle(release_json, files, root_json=json.dumps(trusted).encode())
    stick = tmp_path / "stick"
    stick.mkdir()
    (stick / "bogus.airlock").write_bytes(bogus)
    with Serve.start(root, watch=[stick]) as s:
        assert s.wait_event("drop-result", drop=str(stick / "bogus.airlock"))["outcome"] == \
            "rejected"
        shutil.copy(releases["v3"], stick / "v3.airlock")
        e = s.wait_event("drop-result", drop=str(stick / "v3.airlock"))
        assert e["outcome"] == "installed", e
    assert active_id(root) == "vision-3"
    assert _outcome(stick, "bogus")["outcome"] == "rejected"
