"""arm64 end to end under emulation: the linux/arm64 kit on Debian 12's own aarch64 Python.

What a Raspberry Pi (Raspberry Pi OS bookworm) or an arm64 Debian 12 box does
on site, in a chroot of a ``debootstrap``-made Debian 12 arm64 rootfs run
through qemu-user-static (tests/support/arm64.py; the rootfs is cached at
``$AIRLOCK_ARM64_ROOTFS``, default ``/var/tmp/airlock-arm64/rootfs``):

1. ``tar xf`` the arm64 kit of this checkout (A, 1.0.0) and run its
   ``install.sh`` with the rootfs's ``/usr/bin/python3`` (3.11.2, aarch64) and
   no package index;
2. install a release whose health check runs a real ONNX model on the aarch64
   ONNX Runtime (under qemu it may print CPU-detection warnings on stderr);
3. a release whose golden outputs are wrong fails its check: exit 4, the
   previous release stays active;
4. a release carrying the arm64 kit B (1.1.0) updates the agent itself;
5. one bundle with fp32, int8 (a label picks it) and arm64 variants (issue 27):
   the device picks the arm64 one by its real, probed architecture and
   health-checks it with its own goldens.

Under ``CI=true`` it never skips. Wall times are printed (``-s`` shows them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agentkit import A, B, BuiltKit
from tests.support.arm64 import Arm64Device, arm64_rootfs
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec

pytestmark = pytest.mark.integration

ROOT = "/var/lib/airlock"


class Timer:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = self.started
        self.laps: list[str] = []

    def lap(self, what: str) -> None:
        now = time.monotonic()
        self.laps.append(f"{what} {now - self.last:.0f} s")
        self.last = now

    def report(self) -> str:
        return f"arm64: {', '.join(self.laps)}; total {time.monotonic() - self.started:.0f} s"


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[Arm64Device, Timer]]:
    timer = Timer()
    base = arm64_rootfs()
    timer.lap("rootfs")
    with Arm64Device.copy_of(base, tmp_path / "rootfs") as dev:
        timer.lap("copy")
        yield dev, timer
    print(timer.report())


def _agent(dev: Arm64Device, *args: Any) -> Any:
    return dev.run("airlock-agent", "--root", ROOT, *args)


def _json(dev: Arm64Device, *args: Any) -> dict[str, Any]:
    r = _agent(dev, *args, "--json")
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def _bundle(work: Path, keys: Keys, sequence: int, **kw: Any) -> Path:
    d = work / f"build-{sequence}"
    d.mkdir(parents=True)
    # Few runs and a roomy timeout: every instruction of ONNX Runtime is emulated.
    spec = write_spec(d, sequence=sequence, scale=1.0 + sequence, runs=2, timeout_s=300, **kw)
    return build(spec, work / f"vision-{sequence}.airlock", [keys.release_key])


def test_the_arm64_kit_installs_checks_rolls_back_and_updates_itself_on_debian_12(
        device: tuple[Arm64Device, Timer], kits: Callable[[str], BuiltKit], keyset: Keys,
        tmp_path: Path) -> None:
    dev, timer = device
    kit_a, kit_b = kits("arm64"), kits("arm64-b")
    timer.lap("kits")
    r = dev.run("python3", "-c", "import platform; print(platform.machine(), "
                "platform.python_version())")
    assert r.stdout.split() == ["aarch64", "3.11.2"], (r.stdout, r.stderr)

    # 1. The site procedure: tar xf, then install.sh with the device's python3, no index.
    dev.put(kit_a.kit, "media/kit-a.tar")
    trust = dev.put(keyset.trust, "media/root.json")
    dev.path("etc/systemd/system").mkdir(parents=True, exist_ok=True)
    r = dev.run("tar", "-xf", "/media/kit-a.tar", "-C", "/media")
    assert r.returncode == 0, r.stderr
    (kit_dir,) = [p.name for p in dev.path("media").iterdir() if p.is_dir()]
    r = dev.run("sh", f"/media/{kit_dir}/install.sh", "--trust", trust, "--root", ROOT,
                "--systemd-dir", "/etc/systemd/system", "--device-id", "pi-1")
    assert r.returncode == 0, r.stderr
    timer.lap("install.sh")
    version = _json(dev, "--version")
    assert version["version"] == A, version
    assert "arm64" in json.dumps(version) and "3.11.2" in json.dumps(version), version
    assert dev.path("etc/systemd/system/airlock-agent.service").is_file()

    # 2. A release with a real model checked on the aarch64 ONNX Runtime.
    work = tmp_path / "bundles"
    good = dev.put(_bundle(work, keyset, 1), "media/vision-1.airlock")
    result = _json(dev, "install", good)
    assert result["active"] == "vision-1", result
    health = _json(dev, "status")["active"]["health"]
    assert health["ok"] is True, health  # ORT's CPU-detection noise on stderr is no failure
    assert [m["name"] for m in health["report"]["models"]] == ["detector"], health
    timer.lap("install+health")

    # 3. Wrong goldens: the check fails on the device, exit 4, vision-1 stays.
    wrong = dev.put(_bundle(work, keyset, 2, wrong=True), "media/vision-2.airlock")
    r = _agent(dev, "install", wrong)
    assert r.returncode == 4, (r.returncode, r.stderr)
    assert "health check of model 'detector' failed" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert _json(dev, "status")["active"]["id"] == "vision-1"
    timer.lap("rollback")

    # 4. A release carrying kit B: the agent updates itself, on the device's python3.
    spec_dir = work / "build-3"
    spec_dir.mkdir(parents=True)
    spec = write_spec(spec_dir, sequence=3, scale=4.0, runs=2, timeout_s=300,
                      extra={"agent": {"kit": str(kit_b.kit)}})
    carrying = dev.put(build(spec, work / "vision-3.airlock", [keyset.release_key]),
                       "media/vision-3.airlock")
    result = _json(dev, "install", carrying)
    assert result["active"] == "vision-3", result
    assert result["agent"]["updated"] and result["agent"]["version"] == B, result
    assert _json(dev, "--version")["version"] == B
    status = _json(dev, "status")
    assert status["agent"]["version"] == B and status["active"]["id"] == "vision-3"
    timer.lap("self-update")

    # 5. One bundle, three variants: the device's probed arch (aarch64 = arm64) picks its own.
    from tests.support.variants import make_variants, variant_spec

    models = make_variants(work / "variant-models")
    spec = variant_spec(work, models, [{"when": {"labels": {"npu": "hailo"}}, "file": "int8"},
                                       {"when": {"arch": "arm64"}, "file": "arm64"},
                                       {"when": {}, "file": "fp32"}], sequence=4)
    import yaml

    doc = yaml.safe_load(spec.read_text())
    for v in doc["models"][0]["variants"]:
        v["health"].update(runs=2, timeout_s=300)  # every instruction is emulated
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    variants = dev.put(build(spec, work / "vision-4.airlock", [keyset.release_key]),
                       "media/vision-4.airlock")
    result = _json(dev, "install", variants)
    assert result["active"] == "vision-4" and result["health"]["ok"], result
    status = _json(dev, "status")
    assert status["facts"]["probed"]["arch"] == "arm64", status["facts"]
    assert status["active"]["variants"] == {"detector": "arm64"}, status["active"]
    installed = dev.path(f"{ROOT.lstrip('/')}/releases/vision-4/models/detector")
    assert (installed / "outputs.npz").read_bytes() == (models / "out-arm64.npz").read_bytes()
    assert not (installed / "fp32.onnx").exists()
    timer.lap("variants")
