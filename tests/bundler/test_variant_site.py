"""One bundle, a site of mixed devices (issue 27 items 4 and 5): `airlock inspect` shows which
device takes which variant, a delta or a `--for-class` bundle carries only the variants its
devices pick, and a device whose variant was left out is refused with nothing changed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import run_agent, run_airlock
from tests.support.device import agent_json
from tests.support.keyset import Keys
from tests.support.treehash import AGENT_BOOKKEEPING, tree_hash
from tests.support.variants import make_variants, variant_spec

VARIANTS = [{"when": {"labels": {"npu": "hailo"}}, "file": "int8"},
            {"when": {"arch": "arm64"}, "file": "arm64"},
            {"when": {}, "file": "fp32"}]


@dataclass
class Site:
    tmp: Path
    models: Path
    full: Path  # sequence 1, every variant
    spec2: Path  # sequence 2 of the same
    devices: dict[str, Path]  # name -> root, sequence 1 installed
    inventories: dict[str, Path]


def _sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def site(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """Three devices of three classes, each running sequence 1 of a three-variant bundle."""
    tmp = tmp_path_factory.mktemp("variant-site")
    models = make_variants(tmp / "models")
    spec1 = variant_spec(tmp, models, VARIANTS, sequence=1)
    spec2 = variant_spec(tmp, models, VARIANTS, sequence=2)
    full = tmp / "vision-1.airlock"
    r = run_airlock("build", spec1, "--key", keyset.release_key, "-o", full, "--no-check")
    assert r.returncode == 0, r.stderr
    devices, inventories = {}, {}
    for name, init, config in [("npu-1", ("--label", "npu=hailo"), ()),
                               ("pi-1", (), ("--fact", "arch=aarch64")),
                               ("pi-2", (), ("--fact", "arch=arm64")),
                               ("x86-1", (), ())]:
        root = tmp / name
        r = run_agent("--root", root, "init", "--trust", keyset.trust, "--device-id", name, *init)
        assert r.returncode == 0, r.stderr
        if config:
            agent_json(root, "config", *config)
        assert agent_json(root, "install", full)["active"] == "vision-1"
        inv = tmp / f"{name}.inventory.json"
        r = run_agent("--root", root, "inventory", "-o", inv)
        assert r.returncode == 0, r.stderr
        devices[name], inventories[name] = root, inv
    return Site(tmp, models, full, spec2, devices, inventories)


def test_inspect_shows_the_model_by_variant_matrix_and_who_takes_which(site: Site) -> None:
    r = run_airlock("inspect", site.full, "--inventories", *site.inventories.values(), "--json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["variants"]
    assert row["model"] == "detector"
    by_name = {v["name"]: v for v in row["variants"]}
    assert list(by_name) == ["int8", "arm64", "fp32"]  # signed order: first match wins
    assert by_name["int8"]["devices"] == ["npu-1"]
    assert by_name["arm64"]["devices"] == ["pi-1", "pi-2"]  # aarch64 is arm64
    assert by_name["fp32"]["devices"] == ["x86-1"]
    assert by_name["arm64"]["when"] == {"arch": ["arm64"]}
    for kind, v in by_name.items():  # each variant's size: at least its model file
        assert v["carried"] and v["size"] > (site.models / f"{kind}.onnx").stat().st_size
    assert row["unmatched"] == [] and row["unknown"] == []
    text = run_airlock("inspect", site.full, "--inventories", *site.inventories.values()).stdout
    assert "variants  detector" in text and "devices: pi-1, pi-2" in text
    # Without inventories: the matrix, without devices.
    bare = json.loads(run_airlock("inspect", site.full, "--json").stdout)["variants"][0]
    assert "devices" not in bare["variants"][0]


def test_a_delta_for_an_all_arm64_site_carries_no_other_variant(
        site: Site, keyset: Keys) -> None:
    full2 = site.tmp / "vision-2.airlock"
    r = run_airlock("build", site.spec2, "--key", keyset.release_key, "-o", full2, "--no-check")
    assert r.returncode == 0, r.stderr
    delta = site.tmp / "vision-2-arm.airlock"
    r = run_airlock("build", site.spec2, "--key", keyset.release_key, "-o", delta, "--no-check",
                    "--delta-from", site.inventories["pi-1"], "--delta-from",
                    site.inventories["pi-2"], "--json")
    assert r.returncode == 0, r.stderr
    built = json.loads(r.stdout)
    assert built["omits"] > 0
    print(f"\nvariant bundle {full2.stat().st_size} B; delta for an all-arm64 site "
          f"{delta.stat().st_size} B")
    import tarfile

    with tarfile.open(delta) as tar:
        carried = {m.name for m in tar.getmembers()}
    for kind in ("fp32", "int8"):  # amd64's and the NPU's builds: not carried
        assert f"blobs/sha256/{_sha(site.models / f'{kind}.onnx')[7:]}" not in carried
    inspected = json.loads(run_airlock("inspect", delta, "--json").stdout)["variants"][0]
    assert {v["name"]: v["left_out"] for v in inspected["variants"]} == {
        "int8": True, "arm64": False, "fp32": True}
    assert not inspected["variants"][1]["carried"]  # arm64's: already on the devices
    assert delta.stat().st_size < full2.stat().st_size
    # An arm64 device installs it; so does an amd64 device that holds fp32 already (the same
    # bytes as in sequence 1): a device requires only the blobs of the variant it picks.
    assert agent_json(site.devices["pi-1"], "install", delta)["active"] == "vision-2"
    assert agent_json(site.devices["x86-1"], "install", delta)["active"] == "vision-2"


def test_for_class_builds_a_bundle_for_one_class_of_device(
        site: Site, keyset: Keys, tmp_path: Path) -> None:
    spec = variant_spec(tmp_path, site.models, VARIANTS, sequence=1)
    out = tmp_path / "arm.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out, "--no-check",
                    "--for-class", "arch=aarch64", "--json")
    assert r.returncode == 0, r.stderr
    import tarfile

    with tarfile.open(out) as tar:
        carried = {m.name for m in tar.getmembers()}
    assert f"blobs/sha256/{_sha(site.models / 'arm64.onnx')[7:]}" in carried
    for kind in ("fp32", "int8"):
        assert f"blobs/sha256/{_sha(site.models / f'{kind}.onnx')[7:]}" not in carried
    print(f"\none bundle for arm64: {out.stat().st_size} B, all variants "
          f"{site.full.stat().st_size} B")
    # A fresh arm64 device installs it from nothing, health-checked with arm64's goldens.
    root = tmp_path / "pi-3"
    assert run_agent("--root", root, "init", "--trust", keyset.trust).returncode == 0
    agent_json(root, "config", "--fact", "arch=arm64")
    assert agent_json(root, "install", out)["health"]["ok"]
    assert agent_json(root, "status")["active"]["variants"] == {"detector": "arm64"}
    # An amd64 device picks fp32, which this bundle left out: refused, nothing changed.
    x86 = tmp_path / "x86-new"
    assert run_agent("--root", x86, "init", "--trust", keyset.trust).returncode == 0
    before = tree_hash(x86, skip={*AGENT_BOOKKEEPING, "facts.json"})
    r = run_agent("--root", x86, "install", out)
    assert r.returncode == 3, r.stderr
    assert "leaves out the variant this device picks (detector runs fp32)" in r.stderr
    assert tree_hash(x86, skip={*AGENT_BOOKKEEPING, "facts.json"}) == before
    # A device's facts.json names the class just as well; a malformed class is exit 2.
    facts = site.devices["npu-1"] / "facts.json"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "npu.airlock",
                    "--no-check", "--for-class", facts, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["omits"] > 0, r.stderr
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "x.airlock",
                    "--no-check", "--for-class", "arch")
    assert r.returncode == 2 and "NAME=VALUE" in r.stderr


def test_a_delta_for_a_device_no_variant_fits_is_refused_at_build(
        site: Site, keyset: Keys, tmp_path: Path) -> None:
    spec = variant_spec(tmp_path, site.models, VARIANTS[:2], sequence=2)
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "d.airlock",
                    "--no-check", "--delta-from", site.inventories["x86-1"])
    assert r.returncode == 2
    assert "no variant of model 'detector' fits device x86-1" in r.stderr


def test_the_page_and_the_fleet_reports_say_which_variant_each_device_runs(
        site: Site, tmp_path: Path) -> None:
    from agent.layout import Layout
    from agent.observe.statuspage import status_page

    html = status_page(Layout(site.devices["pi-2"]))  # what serve's page shows
    assert 'detector <span class="muted">variant <b class="mono">arm64</b>' in html
    fleet, stick = tmp_path / "fleet", tmp_path / "stick"
    for name in ("npu-1", "pi-2", "x86-1"):
        root = site.devices[name]
        agent_json(root, "report", "-o", stick / f"{name}.report.json")
        r = run_airlock("report", "enroll", root / "device.pub", "--device-id", name,
                        "--fleet", fleet)
        assert r.returncode == 0, r.stderr
    r = run_airlock("report", "ingest", stick, "--fleet", fleet, "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["device"]: row["variants"] for row in json.loads(r.stdout)["devices"]}
    assert rows == {"npu-1": {"detector": "int8"}, "pi-2": {"detector": "arm64"},
                    "x86-1": {"detector": "fp32"}}
    page = tmp_path / "fleet.html"
    table = run_airlock("report", "ingest", stick, "--fleet", fleet, "--html", page).stdout
    assert "detector:arm64" in table and "detector:int8" in table
    assert "detector: arm64" in page.read_text() and "detector: fp32" in page.read_text()


def test_diff_names_the_variants_added_removed_and_reselected(
        site: Site, keyset: Keys, tmp_path: Path) -> None:
    spec = variant_spec(tmp_path, site.models, [
        VARIANTS[0],
        {"when": {"arch": "arm64", "cpu_features": ["asimddp"]}, "file": "arm64"},
        {"when": {}, "file": "fp32", "name": "generic"}], sequence=2)
    new = tmp_path / "vision-2.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", new, "--no-check")
    assert r.returncode == 0, r.stderr
    r = run_airlock("diff", site.full, new, "--json")
    assert r.returncode == 0, r.stderr
    models = json.loads(r.stdout)["models"]
    assert [x["name"] for x in models["added"]] == ["detector (variant generic)"]
    assert [x["name"] for x in models["removed"]] == ["detector (variant fp32)"]
    (changed,) = models["changed"]
    assert changed["name"] == "detector (variant arm64)"
    assert changed["quality_changed"] == ["variant selector ('when')"]
    assert models["unchanged"] == ["detector (variant int8)"]
    text = run_airlock("diff", site.full, new).stdout
    assert "  + detector (variant generic): fp32.onnx" in text
    assert "  ~ detector (variant arm64): " in text and "variant selector ('when') changed" in text
