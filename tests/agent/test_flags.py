"""Signed feature flags on a device: applied without touching models, shown with their source,
rolled back, refused when replayed with an older sequence, kept across a release install.

    airlock flags set night_mode=true --name site --sequence 2 --key release.key -o f.airlock
    airlock-agent install f.airlock        # applied; current and the models stay as they were
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.journal import Journal
from tests.support.cli import run_agent, run_airlock
from tests.support.device import active_id, agent_json, copy_device, init_device
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec
from tests.support.treehash import tree_hash


def _flags(keyset: Keys, out: Path, *assign: str, sequence: int, extra: tuple[str, ...] = (),
           key: Path | None = None) -> Path:
    p = run_airlock("flags", "set", *assign, "--name", "site", "--sequence", sequence,
                    "--key", key or keyset.release_key, "-o", out, *extra)
    assert p.returncode == 0, p.stderr
    return out


@pytest.fixture(scope="module")
def installed(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A device on vision-1, whose own flags are night_mode=false and fps=15: installed once."""
    work = tmp_path_factory.mktemp("flags")
    v1 = build(write_spec(work, sequence=1, runs=2,
                          extra={"flags": {"night_mode": False, "fps": 15}}),
               work / "vision-1.airlock", [keyset.release_key])
    root = init_device(work / "device", keyset)
    agent_json(root, "install", v1)
    return root


@pytest.fixture
def device(installed: Path, tmp_path: Path) -> Path:
    return copy_device(installed, tmp_path / "device")


def _values(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "current" / "flags.json").read_text())
    return data


def test_flags_apply_show_roll_back_and_refuse_a_replay(
        device: Path, keyset: Keys, tmp_path: Path, make_bundle: Callable[..., Path]) -> None:
    assert _values(device) == {"night_mode": False, "fps": 15}
    models = tree_hash(device / "releases" / "vision-1" / "models")
    f2 = _flags(keyset, tmp_path / "f2.airlock", "night_mode=true", "label=dusk", sequence=2)
    f3 = _flags(keyset, tmp_path / "f3.airlock", "night_mode=true", "fps=30", sequence=3)

    applied = agent_json(device, "install", f2)
    assert applied["applied"] and applied["sequence"] == 2
    assert _values(device) == {"night_mode": True, "fps": 15, "label": "dusk"}
    assert active_id(device) == "vision-1"
    assert tree_hash(device / "releases" / "vision-1" / "models") == models
    events = [e["event"] for e in Journal(device / "journal.jsonl").entries()]
    assert events[-1] == "flags-applied" and events[-2] != "health-result"

    assert agent_json(device, "flags", "apply", f3)["sequence"] == 3
    shown = agent_json(device, "flags")["flags"]
    assert shown["fps"] == {"value": 30, "source": "flags site #3"}
    assert "label" not in shown  # set 3 does not name it: back to nothing
    assert shown["night_mode"]["source"] == "flags site #3"

    # An older set replayed: refused (exit 3), nothing changes.
    p = run_agent("--root", device, "install", f2)
    assert p.returncode == 3 and "older than sequence 3" in p.stderr
    assert _values(device)["fps"] == 30

    # Rolled back: sequence 2's values again; then none at all.
    assert agent_json(device, "flags", "rollback", "site")["to"] == 2
    assert _values(device) == {"night_mode": True, "fps": 15, "label": "dusk"}
    agent_json(device, "flags", "rollback", "site")
    assert _values(device) == {"night_mode": False, "fps": 15}
    # The anti-rollback mark stays: a rolled-back device still refuses the older set.
    assert run_agent("--root", device, "flags", "apply", f2).returncode == 3
    agent_json(device, "flags", "apply", f3)

    # A release installed later gets the applied flags in its own flags.json.
    v2 = make_bundle(sequence=2, runs=2, scale=3.0, extra={"flags": {"fps": 10, "hdr": True}})
    agent_json(device, "install", v2)
    assert _values(device) == {"night_mode": True, "fps": 30, "hdr": True}
    # 'flags apply' takes flags only: a release bundle is a usage error.
    p = run_agent("--root", device, "flags", "apply", v2)
    assert p.returncode == 2 and "is a release bundle" in p.stderr


def test_flags_refused_when_unsigned_for_this_device(device: Path, keyset: Keys,
                                                     tmp_path: Path) -> None:
    from keys.keyfile import generate_keypair

    rogue, _ = generate_keypair("rogue", tmp_path)
    bad = _flags(keyset, tmp_path / "rogue.airlock", "night_mode=true", sequence=2, key=rogue)
    p = run_agent("--root", device, "install", bad)
    assert p.returncode == 3 and "signature" in p.stderr
    ringed = _flags(keyset, tmp_path / "ring.airlock", "night_mode=true", sequence=2,
                    extra=("--ring", "canary"))
    p = run_agent("--root", device, "flags", "apply", ringed)
    assert p.returncode == 3 and "ring" in p.stderr  # this device is in no ring
    assert _values(device)["night_mode"] is False

    # -o never replaces a file that is not a bundle.
    notes = tmp_path / "notes.airlock"
    notes.write_text("site notes\n")
    p = run_airlock("flags", "set", "night_mode=true", "--sequence", "9", "--key",
                    keyset.release_key, "-o", notes)
    assert p.returncode == 2 and "refusing to replace" in p.stderr
    assert notes.read_text() == "site notes\n"


def test_a_percentage_is_the_devices_own_bucket(device: Path, keyset: Keys,
                                                tmp_path: Path) -> None:
    from keys.flags import in_bucket

    half = _flags(keyset, tmp_path / "half.airlock", "night_mode=true", "fps=60", sequence=2,
                  extra=("--percent", "50"))
    agent_json(device, "install", half)
    shown = agent_json(device, "flags")["flags"]
    for flag, default in (("night_mode", False), ("fps", 15)):
        inside = in_bucket("test-dev", flag, 50)  # the device id init_device gives
        assert shown[flag]["value"] == ({"night_mode": True, "fps": 60}[flag] if inside
                                        else default)
        assert ("bucket in 50%" in shown[flag]["source"]) == inside


def test_flags_never_written_through_a_link_out_of_root(device: Path, keyset: Keys,
                                                        tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (device / "flags").symlink_to(outside)
    f2 = _flags(keyset, tmp_path / "f2.airlock", "night_mode=true", sequence=2)
    p = run_agent("--root", device, "install", f2)
    assert p.returncode == 5 and "not a directory of ROOT" in p.stderr
    assert list(outside.iterdir()) == [] and _values(device)["night_mode"] is False


def test_a_flags_set_named_airlock_or_valued_airlock_applies(device: Path, keyset: Keys,
                                                             tmp_path: Path) -> None:
    # The kind was guessed from the bytes ('"airlock"' absent): both were refused as releases.
    named = tmp_path / "named.airlock"
    p = run_airlock("flags", "set", "night_mode=true", "--name", "airlock", "--sequence", 1,
                    "--key", keyset.release_key, "-o", named)
    assert p.returncode == 0, p.stderr
    assert agent_json(device, "install", named)["applied"]
    valued = _flags(keyset, tmp_path / "valued.airlock", "mode=airlock", sequence=4)
    assert agent_json(device, "flags", "apply", valued)["sequence"] == 4
    assert _values(device) == {"night_mode": True, "fps": 15, "mode": "airlock"}
    assert active_id(device) == "vision-1"


def test_a_flags_bundle_is_verified_inspected_and_diffed_on_the_host(
        keyset: Keys, tmp_path: Path) -> None:
    f2 = _flags(keyset, tmp_path / "f2.airlock", "night_mode=true", "label=dusk", sequence=2)
    f3 = _flags(keyset, tmp_path / "f3.airlock", "night_mode=true", "fps=30", sequence=3,
                extra=("--percent", "10"))
    v = run_airlock("verify", f3, "--trust", keyset.trust)
    assert v.returncode == 0, v.stderr
    assert v.stdout.startswith(f"OK {f3}: flags site (sequence 3) signed by role 'release'")
    assert "fps = 30" in v.stdout and "10% of devices" in v.stdout
    out = json.loads(run_airlock("verify", f3, "--trust", keyset.trust, "--json").stdout)
    assert out["ok"] and out["kind"] == "flags" and out["flags"] == {"night_mode": True, "fps": 30}
    # A trust root that does not trust the signer: exit 3, as on a device.
    other = tmp_path / "other"
    from tests.support.keyset import make_keyset

    assert run_airlock("verify", f3, "--trust", make_keyset(other).trust).returncode == 3
    i = run_airlock("inspect", f3, "--trust", keyset.trust, "--json")
    assert i.returncode == 0, i.stderr
    info = json.loads(i.stdout)
    assert info["kind"] == "flags" and info["verified_role"] == "release"
    assert info["percent"] == 10 and info["sequence"] == 3
    human = run_airlock("inspect", f3)
    assert human.returncode == 0 and "flags set site (sequence 3)" in human.stdout
    d = run_airlock("diff", f2, f3, "--json")
    assert d.returncode == 0, d.stderr
    change = json.loads(d.stdout)
    assert change["flags"] == {"added": {"fps": 30}, "removed": {"label": "dusk"}, "changed": {}}
    assert change["settings"]["percent"] == [100, 10]
    text = run_airlock("diff", f2, f3).stdout
    assert "+ fps = 30" in text and "- label (was 'dusk')" in text


def test_a_flags_bundle_in_the_drop_folder_has_its_own_outcome(
        device: Path, keyset: Keys, tmp_path: Path) -> None:
    from tests.support.serve import Serve, metric

    stick = tmp_path / "stick"
    stick.mkdir()
    _flags(keyset, stick / "site-flags-2.airlock", "night_mode=true", sequence=2)
    with Serve.start(device, watch=[stick]) as s:
        e = s.wait_event("drop-result", drop=str(stick / "site-flags-2.airlock"))
        assert e["outcome"] == "flags_applied", e
        text = s.get("/metrics")
        assert metric(text, "airlock_drop_bundles_total", outcome="flags_applied") == 1
        assert metric(text, "airlock_drop_bundles_total", outcome="already_active") == 0
    result = (stick / "site-flags-2.result.txt").read_text()
    assert "FLAGS APPLIED: applied flags site (sequence 2" in result
    assert "None" not in result and "ALREADY" not in result
    assert json.loads((stick / "site-flags-2.result.json").read_text())["outcome"] == \
        "flags_applied"
    assert _values(device)["night_mode"] is True
