"""``airlock agent-kit`` on the host: real wheels for the device's platform, signed, reproducible.

The kits are built from copies of this checkout (tests/kit/conftest.py); a
cold wheel cache fetches from the package index once, later runs need none.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

from bundler.build.cache import default_cache_dir
from keys.kit import verify_kit
from keys.trust import TrustRoot
from tests.support.agentkit import A, BuiltKit, unpack
from tests.support.cli import run_airlock
from tests.support.keyset import Keys


def _verify_kit_py(kit_dir: Path, trust: Path) -> subprocess.CompletedProcess[str]:
    """The kit's own stdlib verifier, on a bare interpreter as install.sh runs it."""
    return subprocess.run([sys.executable, "-I", str(kit_dir / "verify_kit.py"), str(kit_dir),
                           "--trust", str(trust)], capture_output=True, text=True)


def _platform_tags(wheel: str) -> list[str]:
    return wheel.removesuffix(".whl").split("-")[-1].split(".")


def test_kit_carries_the_agent_and_every_dependency_as_wheels(
        kits: Callable[[str], BuiltKit], keyset: Keys, tmp_path: Path) -> None:
    built = kits("a")
    kit_dir = unpack(built.kit, tmp_path)
    r = _verify_kit_py(kit_dir, keyset.trust)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0].startswith(f"{A}-")
    kit = verify_kit(TrustRoot.from_bytes(keyset.trust.read_bytes()),
                     (kit_dir / "kit.json").read_bytes())
    assert (kit.version, kit.platform) == (A, "linux/amd64")
    wheels = sorted(p.name for p in (kit_dir / "wheels").iterdir())
    names = {w.split("-")[0].lower() for w in wheels}
    assert {"airlock_edge", "numpy", "onnxruntime", "cryptography", "tuf", "psutil",
            "securesystemslib", "pip"} <= names
    assert not any(w.endswith((".tar.gz", ".zip")) for w in wheels)  # only binary wheels
    for w in wheels:
        assert all(t == "any" or t.endswith("x86_64") for t in _platform_tags(w)), w
    # Every wheel but pip is pinned with its hash, so pip installs nothing else.
    pinned = [ln for ln in (kit_dir / "requirements.txt").read_text().splitlines()
              if ln and not ln.startswith("#")]
    assert len(pinned) == len(wheels) - 1
    assert all("==" in ln and "--hash=sha256:" in ln for ln in pinned)
    # kit.json lists exactly what is there.
    assert set(kit.files) == {p.relative_to(kit_dir).as_posix()
                              for p in kit_dir.rglob("*") if p.is_file()} - {"kit.json"}


def test_arm64_kit_holds_only_arm64_or_universal_wheels(
        kits: Callable[[str], BuiltKit], keyset: Keys, tmp_path: Path) -> None:
    kit_dir = unpack(kits("arm64").kit, tmp_path)
    wheels = sorted(p.name for p in (kit_dir / "wheels").iterdir())
    for w in wheels:
        assert all(t == "any" or t.endswith("aarch64") for t in _platform_tags(w)), w
    native = {w.split("-")[0].lower() for w in wheels if _platform_tags(w) != ["any"]}
    assert {"numpy", "onnxruntime", "cryptography", "psutil"} <= native
    # It cannot run here, and its verifier says why before anything happens.
    r = _verify_kit_py(kit_dir, keyset.trust)
    assert r.returncode == 3
    assert "kit is for linux/arm64; this device is linux/amd64" in r.stderr


def test_the_same_sources_give_the_same_kit(kits: Callable[[str], BuiltKit], keyset: Keys,
                                            tmp_path: Path, source_date_epoch: str) -> None:
    built = kits("a")
    again = tmp_path / "again.tar"
    r = run_airlock("agent-kit", "--project", built.project, "--key", keyset.release_key,
                    "-o", again, env={"SOURCE_DATE_EPOCH": source_date_epoch}, timeout=900)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(again.read_bytes()).hexdigest() == \
        hashlib.sha256(built.kit.read_bytes()).hexdigest()


def test_a_dependency_without_a_binary_wheel_is_named(
        kits: Callable[[str], BuiltKit], keyset: Keys, tmp_path: Path) -> None:
    built = kits("a")  # warms the wheel cache: everything else resolves from it, offline
    links = tmp_path / "links"
    links.mkdir()
    (links / "airlock-nowheel-demo-1.0.tar.gz").write_bytes(b"an sdist, never a wheel")
    cache = default_cache_dir() / "wheels"  # the suite's own (tests/conftest.py)
    r = run_airlock("agent-kit", "--project", built.project, "--key", keyset.release_key,
                    "--update-lock", "--lock", tmp_path / "lock.json",
                    "--extra", "airlock-nowheel-demo", "--index-url", "file:///nonexistent/simple",
                    "--find-links", cache, "--find-links", links, "-o", tmp_path / "k.tar",
                    timeout=900)
    assert r.returncode == 2, r.stderr
    assert "no binary wheel of airlock-nowheel-demo" in r.stderr
    assert not (tmp_path / "k.tar").exists()


def test_bad_targets_and_missing_locks_are_usage_errors(
        kits: Callable[[str], BuiltKit], keyset: Keys, tmp_path: Path) -> None:
    built = kits("a")
    r = run_airlock("agent-kit", "--platform", "linux/riscv64", "--key", keyset.release_key)
    assert r.returncode == 2 and "kits exist for linux/amd64, linux/arm64" in r.stderr
    lock = tmp_path / "lock.json"
    lock.write_text(json.dumps({"targets": {}}))
    r = run_airlock("agent-kit", "--project", built.project, "--key", keyset.release_key,
                    "--lock", lock, "-o", tmp_path / "k.tar", timeout=900)
    assert r.returncode == 2 and "run again with --update-lock" in r.stderr


def test_a_release_carries_a_kit_as_an_oci_artifact(
        kits: Callable[[str], BuiltKit], keyset: Keys, tmp_path: Path) -> None:
    from tests.support.spec import write_spec

    built = kits("a")
    spec = write_spec(tmp_path, sequence=2, extra={"agent": {"kit": str(built.kit)}})
    out = tmp_path / "v2.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(run_airlock("inspect", out, "--json").stdout)
    assert info["agent_kits"] == [{"file": built.kit.name, "version": A,
                                   "platform": "linux/amd64",
                                   "python": f"{sys.version_info.major}.{sys.version_info.minor}",
                                   "size": built.kit.stat().st_size}]
    r = run_airlock("verify", out, "--trust", keyset.trust)
    assert r.returncode == 0, r.stderr
    # A damaged kit is refused at build, naming the member.
    broken = tmp_path / "broken.tar"
    data = bytearray(built.kit.read_bytes())
    with tarfile.open(built.kit) as tar:
        wheel = next(m for m in tar.getmembers() if m.name.endswith(".whl"))
    data[wheel.offset_data + wheel.size // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "x.airlock",
                    "--agent-kit", broken)
    assert r.returncode == 2, r.stderr
    assert f"{wheel.name.split('/', 1)[1]}' does not match its sha256" in r.stderr, r.stderr


def test_the_spec_names_a_missing_kit(keyset: Keys, tmp_path: Path) -> None:
    from tests.support.spec import write_spec

    spec = write_spec(tmp_path, extra={"agent": {"kit": ["nowhere.tar"]}})
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "x.airlock")
    assert r.returncode == 2, r.stderr
    assert "field 'agent.kit': file nowhere.tar does not exist" in r.stderr
    spec = write_spec(tmp_path, sequence=2, extra={"agent": {"kits": "x.tar"}})
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "x.airlock")
    assert r.returncode == 2 and "field 'agent.kits': unknown field" in r.stderr
    r = run_airlock("build", write_spec(tmp_path, sequence=3), "--key", keyset.release_key,
                    "-o", tmp_path / "x.airlock", "--agent-kit", tmp_path / "missing.tar")
    assert r.returncode == 2 and "--agent-kit" in r.stderr and "no such file" in r.stderr


def test_a_lock_is_resolved_only_on_the_targets_own_python(keyset: Keys, tmp_path: Path) -> None:
    # pip judges dependency markers by the Python running it: a 3.10 lock made on another
    # Python missed typing-extensions, and that kit's install.sh failed on 3.10 devices.
    other = "3.10" if sys.version_info[:2] != (3, 10) else "3.12"
    r = run_airlock("agent-kit", "--key", keyset.release_key, "--update-lock", "--python", other,
                    "--lock", tmp_path / "lock.json", "-o", tmp_path / "k.tar", timeout=900)
    assert r.returncode == 2, r.stderr
    assert f"needs Python {other} itself" in r.stderr and not (tmp_path / "lock.json").exists()
