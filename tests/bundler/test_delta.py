"""Signed device inventories, delta bundles built against them, and `airlock diff`.

Three real devices: A and B run release 1 (models `base`, 2 MiB, and `detector`); C runs a
release whose `base` is another model, so `base` is on A and B but not on all three. Release 2
changes only `detector` (plus a flag, a budget and a probe) and keeps `base` byte for byte.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keys.device import INVENTORY_TYPE, verify_document
from scripts import modelkit
from tests.support.cli import run_agent, run_airlock
from tests.support.device import agent_json, assert_consistent, copy_device, init_device
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec
from tests.support.treehash import tree_hash


def _model(directory: Path, name: str, scale: float, pad_mb: int = 0,
           health: Mapping[str, Any] | None = None) -> dict[str, Any]:
    d = directory / name
    if not (d / "model.onnx").exists():
        modelkit.make(d, scale, pad_mb=pad_mb)
    return {"name": name.split("-")[0], "path": f"{d.name}/model.onnx",
            "health": {"inputs": f"{d.name}/inputs.npz", "outputs": f"{d.name}/outputs.npz",
                       "runs": 3, **(health or {})}}


@dataclass
class Site:
    work: Path
    keys: Keys
    devices: dict[str, Path]  # A, B, C
    inventories: dict[str, Path]
    v1: Path
    v2_spec: Path

    def device(self, which: str, to: Path) -> Path:
        return copy_device(self.devices[which], to)


@pytest.fixture(scope="module")
def site(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Site:
    work = tmp_path_factory.mktemp("site")
    base = _model(work, "base-1", 1.0, pad_mb=2)
    other_base = _model(work, "base-0", 1.5)
    v1 = build(write_spec(work, sequence=1, models=[base, _model(work, "detector-1", 2.0)],
                          extra={"flags": {"threshold": 0.5, "mode": "fast"}}),
               work / "vision-1.airlock", [keyset.release_key])
    v0 = build(write_spec(work, name="vision", sequence=1, file_name="other.yaml",
                          models=[other_base, _model(work, "detector-1", 2.0)]),
               work / "vision-other.airlock", [keyset.release_key])
    v2_spec = write_spec(
        work, sequence=2, version="1.1",
        models=[base, _model(work, "detector-2", 3.0, health={"max_p95_ms": 500})],
        extra={"flags": {"threshold": 0.7, "mode": "fast", "night": True},
               "hooks": {"probe": "true", "probe_window_s": 5}})
    devices, inventories = {}, {}
    for which, bundle in (("A", v1), ("B", v1), ("C", v0)):
        root = init_device(work / f"device-{which}", keyset)
        agent_json(root, "install", bundle)
        inv = work / f"{which}.inventory.json"
        p = run_agent("--root", root, "inventory", "-o", inv)
        assert p.returncode == 0, p.stderr
        devices[which], inventories[which] = root, inv
    return Site(work, keyset, devices, inventories, v1, v2_spec)


def _build_delta(site: Site, out: Path, *which: str, extra: tuple[Any, ...] = ()) -> Any:
    args = [a for w in which for a in ("--delta-from", site.inventories[w])]
    return run_airlock("build", site.v2_spec, "--key", site.keys.release_key, "-o", out,
                       *args, *extra, "--json")


def _inspect(bundle: Path) -> dict[str, Any]:
    p = run_airlock("inspect", bundle, "--json")
    assert p.returncode == 0, p.stderr
    result: dict[str, Any] = json.loads(p.stdout)
    return result


# -- inventories --------------------------------------------------------------------


def test_init_prints_the_device_key_and_show_checks_the_inventory(site: Site,
                                                                  tmp_path: Path) -> None:
    p = run_agent("--root", tmp_path / "d", "init", "--trust", site.keys.trust)
    pub = json.loads((tmp_path / "d/device.pub").read_text())
    assert p.returncode == 0 and pub["keyid"] in p.stdout and pub["keyval"]["public"] in p.stdout
    a_pub = site.devices["A"] / "device.pub"
    p = run_airlock("inventory", "show", site.inventories["A"], "--device-key", a_pub, "--json")
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    inv = shown["inventory"]
    assert inv["active"] == "vision-1" and inv["sequences"] == {"vision": 1}
    assert {m["name"] for m in inv["releases"][0]["models"]} == {"base", "detector"}
    stored = {f"sha256:{b.name}": b.stat().st_size
              for b in (site.devices["A"] / "blobs/sha256").iterdir()}
    assert {b["digest"]: b["size"] for b in inv["blobs"]} == stored
    # Signed by A, so not by B's key.
    p = run_airlock("inventory", "show", site.inventories["A"], "--device-key",
                    site.devices["B"] / "device.pub")
    assert p.returncode == 3 and "none of the 1 key(s)" in p.stderr, p.stderr
    human = run_airlock("inventory", "show", site.inventories["A"])
    assert human.returncode == 0 and "signature OK" in human.stdout and "vision-1" in human.stdout
    # `-o -`: the signed document alone on standard output, for a pipe.
    p = run_agent("--root", site.devices["B"], "inventory", "-o", "-", "--json")
    assert p.returncode == 0, p.stderr
    doc = verify_document(p.stdout.encode(), INVENTORY_TYPE)
    assert doc.keyid == json.loads((site.devices["B"] / "device.pub").read_text())["keyid"]


def _forge(inv: Path, out: Path, how: str) -> Path:
    doc = json.loads(inv.read_text())
    body = json.loads(base64.b64decode(doc["payload"]))
    if how == "edited-payload":  # claim to hold a blob it does not
        body["blobs"].append({"digest": "sha256:" + "ab" * 32, "size": 5})
        doc["payload"] = base64.b64encode(json.dumps(body).encode()).decode()
    elif how == "other-key-embedded":  # a signature by A, presented as B's document
        doc["publicKey"] = json.loads((inv.parent / "device-B/device.pub").read_text())
    else:
        doc = {"payload": "not json", "signatures": []}
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize("how", ["edited-payload", "other-key-embedded", "garbage"])
def test_build_refuses_a_forged_or_edited_inventory(how: str, site: Site, tmp_path: Path) -> None:
    forged = _forge(site.inventories["A"], tmp_path / "forged.json", how)
    out = tmp_path / "delta.airlock"
    p = run_airlock("build", site.v2_spec, "--key", site.keys.release_key, "-o", out,
                    "--delta-from", forged)
    assert p.returncode == 3, p.stderr
    assert ("signature" in p.stderr) if how != "garbage" else ("inventory" in p.stderr), p.stderr
    assert not out.exists()


def test_build_refuses_a_delta_for_a_device_that_is_already_ahead(site: Site,
                                                                  tmp_path: Path) -> None:
    spec = write_spec(tmp_path, sequence=1, models=[_model(tmp_path, "detector-1", 2.0)])
    p = run_airlock("build", spec, "--key", site.keys.release_key, "-o", tmp_path / "x.airlock",
                    "--delta-from", site.inventories["A"])
    assert p.returncode == 2 and "has accepted vision sequence 1" in p.stderr, p.stderr


# -- deltas ---------------------------------------------------------------------------


def test_delta_against_one_inventory_ships_only_the_change_and_installs(
        site: Site, tmp_path: Path) -> None:
    full = build(site.v2_spec, tmp_path / "full.airlock", [site.keys.release_key])
    delta = tmp_path / "delta.airlock"
    p = _build_delta(site, delta, "A")
    assert p.returncode == 0, p.stderr
    info = _inspect(delta)
    assert info["delta"]["inventories"][0]["device_id"] == "test-dev"
    assert info["full_size"] == _inspect(full)["full_size"]
    changed = sum(b.stat().st_size for b in (site.work / "detector-2").iterdir()
                  if b.name != "inputs.npz")  # golden inputs are shared with release 1
    assert info["shipped_size"] < changed + 4096  # + manifest, config, index.json
    assert delta.stat().st_size < full.stat().st_size - 2 * 1024 * 1024
    # Installs on A (a copy), with the 2 MiB base model taken from A's store.
    device = site.device("A", tmp_path / "A")
    result = agent_json(device, "install", delta)
    assert result["active"] == "vision-2" and result["health"]["ok"]
    assert_consistent(device)
    assert run_agent("--root", device, "fsck").returncode == 0


def test_delta_on_a_device_lacking_one_expected_blob_is_exit_3_and_changes_nothing(
        site: Site, tmp_path: Path) -> None:
    delta = tmp_path / "delta.airlock"
    assert _build_delta(site, delta, "A").returncode == 0
    device = site.device("A", tmp_path / "A")
    base = json.loads(run_airlock("inspect", site.v1, "--json").stdout)["models"][0]
    assert base["name"] == "base"
    (device / "blobs/sha256" / base["blob"][7:]).unlink()  # A lost one blob since its inventory
    before = tree_hash(device)
    p = run_agent("--root", device, "install", delta)
    assert p.returncode == 3, p.stderr
    assert ("built against base sequence 1; this device has accepted up to sequence 1 and "
            "lacks 1 of the blob(s) the delta expects: " + base["blob"]) in p.stderr, p.stderr
    assert "carry the full bundle of sequence 2" in p.stderr
    assert tree_hash(device) == before
    # A device that never had release 1 lacks every expected blob, and is told how many.
    fresh = init_device(tmp_path / "fresh", site.keys)
    p = run_agent("--root", fresh, "install", delta)
    expected = _inspect(delta)["delta"]["expects"]
    assert p.returncode == 3, p.stderr
    assert (f"base sequence 1; this device has no release of vision and lacks {expected} of "
            "the blob(s)") in p.stderr, p.stderr


def test_delta_against_three_inventories_leaves_out_only_what_all_hold(
        site: Site, tmp_path: Path) -> None:
    one, three = tmp_path / "one.airlock", tmp_path / "three.airlock"
    assert _build_delta(site, one, "A").returncode == 0
    p = _build_delta(site, three, "A", "B", "C")
    assert p.returncode == 0, p.stderr
    info = _inspect(three)
    assert [i["device_id"] for i in info["delta"]["inventories"]] == ["test-dev"] * 3
    # C never held release 1's base model, so the stick for all three carries it.
    assert info["shipped_size"] > _inspect(one)["shipped_size"] + 2 * 1024 * 1024
    assert info["delta"]["expects"] < _inspect(one)["delta"]["expects"]
    for which in ("C", "B"):
        device = site.device(which, tmp_path / which)
        assert agent_json(device, "install", three)["active"] == "vision-2"
        assert_consistent(device)


def test_inspect_text_names_sizes_and_inventories(site: Site, tmp_path: Path) -> None:
    delta = tmp_path / "delta.airlock"
    assert _build_delta(site, delta, "A", "B").returncode == 0
    p = run_airlock("inspect", delta)
    assert p.returncode == 0, p.stderr
    assert "delta     ships" in p.stdout and p.stdout.count("inventory of test-dev") == 2


# -- diff -----------------------------------------------------------------------------


def test_diff_bundle_to_bundle(site: Site, tmp_path: Path) -> None:
    v2 = build(site.v2_spec, tmp_path / "v2.airlock", [site.keys.release_key])
    p = run_airlock("diff", site.v1, v2, "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["release"]["version"] == ["1.0", "1.1"] and d["release"]["sequence"] == [1, 2]
    assert d["models"]["unchanged"] == ["base"]
    [det] = d["models"]["changed"]
    assert det["name"] == "detector" and det["blob_changed"]
    assert det["health"]["max_p95_ms"] == [None, 500]
    assert d["flags"] == {"added": {"night": True}, "removed": {},
                          "changed": {"threshold": [0.5, 0.7]}}
    assert d["hooks"]["probe"] == [None, "true"]
    assert d["delta"]["ship_bytes"] < d["delta"]["full_bytes"] - 2 * 1024 * 1024
    text = run_airlock("diff", site.v1, v2)
    assert text.returncode == 0 and "~ detector" in text.stdout and "threshold" in text.stdout
    same = run_airlock("diff", v2, v2, "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["models"]["changed"] == []


def test_diff_inventory_to_bundle_says_what_a_delta_would_ship(site: Site,
                                                              tmp_path: Path) -> None:
    v2 = build(site.v2_spec, tmp_path / "v2.airlock", [site.keys.release_key])
    delta = tmp_path / "delta.airlock"
    assert _build_delta(site, delta, "C").returncode == 0
    p = run_airlock("diff", site.inventories["C"], v2, "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["old"]["kind"] == "inventory" and d["old"]["sequence"] == 1
    # C's base model is another one: a change, like detector's.
    assert sorted(m["name"] for m in d["models"]["changed"]) == ["base", "detector"]
    assert d["delta"]["ship_bytes"] == _inspect(delta)["shipped_size"]


def test_diff_names_image_layers_added_removed_and_kept() -> None:
    """Images compare by reference: a new manifest lists its blobs added, removed and kept."""
    from bundler.examine.diff import Side, diff, diff_text

    def summary(seq: int, layers: dict[str, int], images: bool = True) -> dict[str, Any]:
        return {"name": "site", "version": str(seq), "sequence": seq, "expires": "2030",
                "models": [], "flags": {}, "hooks": {}, "rings": [],
                "images": [{"ref": "reg/app:1", "platform": "linux/amd64",
                            "manifest": f"sha256:{seq}",
                            "blobs": [{"digest": d, "size": s} for d, s in layers.items()]},
                           *([{"ref": "reg/db:2", "platform": None, "manifest": "sha256:db",
                               "blobs": [{"digest": "db", "size": 7}]}] if images else [])]}

    mb = 1024 * 1024
    old = {"base": 200 * mb, "app-1": 10 * mb}
    new = {"base": 200 * mb, "app-2": 12 * mb}
    d = diff(Side("bundle", "v1", summary(1, old), old), Side("bundle", "v2",
                                                             summary(2, new, images=False), new))
    [app] = d["images"]["changed"]
    assert app["layers_added"] == [{"digest": "app-2", "size": 12 * mb}]
    assert app["layers_removed"] == [{"digest": "app-1", "size": 10 * mb}]
    assert (app["layers_kept"], app["kept_bytes"]) == (1, 200 * mb)
    assert d["images"]["removed"] == [{"ref": "reg/db:2", "size": 7, "layers": 1}]
    assert d["delta"]["ship_bytes"] == 12 * mb and d["delta"]["blobs_left_out"] == 1
    assert "+1 blob(s) (12.0 MiB), -1 (10.0 MiB), 1 kept (200.0 MiB)" in diff_text(d)


def test_diff_matches_a_tag_bump_by_repository() -> None:
    """A tag bump is the same image changing: layers kept and added, not one removed and one added."""
    from bundler.examine.diff import Side, diff, diff_text, repository

    def summary(seq: int, ref: str, layers: dict[str, int]) -> dict[str, Any]:
        return {"name": "site", "version": str(seq), "sequence": seq, "expires": "2030",
                "models": [], "flags": {}, "hooks": {}, "rings": [],
                "images": [{"ref": ref, "platform": None, "manifest": f"sha256:{seq}",
                            "blobs": [{"digest": d, "size": s} for d, s in layers.items()]}]}

    mb = 1024 * 1024
    old, new = {"base": 200 * mb, "app-1": 10 * mb}, {"base": 200 * mb, "app-2": 12 * mb}
    d = diff(Side("bundle", "v1", summary(1, "reg:5000/app:1.0", old), old),
             Side("bundle", "v2", summary(2, "reg:5000/app:1.1", new), new))
    assert d["images"]["added"] == [] and d["images"]["removed"] == []
    [app] = d["images"]["changed"]
    assert (app["was"], app["ref"]) == ("reg:5000/app:1.0", "reg:5000/app:1.1")
    assert (app["layers_kept"], app["kept_bytes"]) == (1, 200 * mb)
    assert "~ reg:5000/app:1.0 -> reg:5000/app:1.1: new manifest; +1 blob(s) (12.0 MiB)" \
        in diff_text(d)
    assert repository("reg:5000/team/app@sha256:ab") == "reg:5000/team/app"
