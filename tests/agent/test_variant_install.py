"""One bundle, many devices (issue 27): each device installs the one variant its facts pick,
stores only that variant's blobs, health-checks it with its own goldens and says which runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_agent
from tests.support.device import agent_json, assert_consistent
from tests.support.keyset import Keys
from tests.support.spec import build
from tests.support.treehash import AGENT_BOOKKEEPING, tree_hash
from tests.support.variants import make_variants, variant_spec


@pytest.fixture(scope="module")
def bundle(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """int8 for an NPU (a label), arm64's own build for arm64 devices, fp32 for the rest."""
    tmp = tmp_path_factory.mktemp("variant-bundle")
    models = make_variants(tmp / "models")
    spec = variant_spec(tmp, models, [{"when": {"labels": {"npu": "hailo"}}, "file": "int8"},
                                      {"when": {"arch": "arm64"}, "file": "arm64", "name": "arm"},
                                      {"when": {}, "file": "fp32"}])
    return build(spec, tmp / "vision-1.airlock", [keyset.release_key]), models


def _device(root: Path, keyset: Keys, *init: str, config: tuple[str, ...] = ()) -> Path:
    r = run_agent("--root", root, "init", "--trust", keyset.trust, *init)
    assert r.returncode == 0, r.stderr
    if config:
        agent_json(root, "config", *config)
    return root


def _stored(root: Path) -> set[str]:
    return {p.name for p in (root / "blobs" / "sha256").iterdir()}


@pytest.mark.parametrize(("init", "config", "variant", "kind"), [
    ((), (), "fp32", "fp32"),                                      # this amd64 host
    (("--label", "npu=hailo"), (), "int8", "int8"),                # chosen by a label
    ((), ("--fact", "arch=aarch64"), "arm", "arm64"),              # chosen by architecture
])
def test_each_device_installs_the_variant_its_facts_pick(
        init: tuple[str, ...], config: tuple[str, ...], variant: str, kind: str,
        bundle: tuple[Path, Path], keyset: Keys, tmp_path: Path) -> None:
    path, models = bundle
    root = _device(tmp_path / "device", keyset, *init, config=config)
    result = agent_json(root, "install", path)
    assert result["active"] == "vision-1" and result["health"]["ok"], result

    status = agent_json(root, "status")
    assert status["active"]["variants"] == {"detector": variant}
    assert f"detector runs {variant}" in run_agent("--root", root, "status").stdout
    from agent.layout import Layout
    from agent.observe.metrics import Observed, metrics_registry

    registry = metrics_registry(Layout(root), Observed())  # what serve's /metrics exposes
    assert registry.get_sample_value("airlock_model_variant", {
        "release": "vision-1", "model": "detector", "variant": variant}) == 1
    mdir = root / "releases" / "vision-1" / "models" / "detector"
    assert (mdir / f"{kind}.onnx").read_bytes() == (models / f"{kind}.onnx").read_bytes()
    # Its own goldens, checked on the device.
    assert (mdir / "outputs.npz").read_bytes() == (models / f"out-{kind}.npz").read_bytes()
    # Only this variant's blobs are stored: the other model file never lands.
    import hashlib

    for other in {"fp32", "int8", "arm64"} - {kind}:
        other_hex = hashlib.sha256((models / f"{other}.onnx").read_bytes()).hexdigest()
        assert other_hex not in _stored(root)
    assert assert_consistent(root)  # fsck's view: every blob the picked release needs is there
    fsck = run_agent("--root", root, "fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_a_device_no_variant_fits_is_refused_with_nothing_changed(
        keyset: Keys, tmp_path: Path) -> None:
    models = make_variants(tmp_path / "models")
    spec = variant_spec(tmp_path, models, [{"when": {"labels": {"npu": "hailo"}}, "file": "int8"},
                                           {"when": {"arch": "riscv64"}, "file": "fp32"}])
    path = build(spec, tmp_path / "v.airlock", [keyset.release_key])
    root = _device(tmp_path / "device", keyset)
    before = tree_hash(root, skip={*AGENT_BOOKKEEPING, "facts.json"})
    r = run_agent("--root", root, "install", path)
    assert r.returncode == 3, r.stderr
    line = r.stderr.strip()
    assert "no variant of model 'detector' fits this device" in line and "\n" not in line
    import platform

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    assert f'"arch":"{arch}"' in line  # the device's facts, named
    assert "int8 wants" in line and "fp32 wants" in line
    assert tree_hash(root, skip={*AGENT_BOOKKEEPING, "facts.json"}) == before
    last = json.loads((root / "journal.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "rejected" and "no variant" in last["reason"]
