"""Root ceremonies: trust roots whose keys sit on separate offline machines.

Two directories stand for the two machines; only public keys, the root
being made and detached signatures travel between them and the coordinator.
A rotation must be signed by the old root's threshold and the new one's,
and devices learn it from the next bundle that carries it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_agent, run_airlock
from tests.support.device import agent_json
from tests.support.spec import write_spec


def _gen(name: str, directory: Path) -> tuple[Path, Path]:
    from keys.keyfile import generate_keypair

    return generate_keypair(name, directory)


def _ok(*args: object) -> dict[str, object]:
    r = run_airlock(*args, "--json")
    assert r.returncode == 0, (args, r.stderr)
    result: dict[str, object] = json.loads(r.stdout)
    return result


def _root_version(device: Path) -> int:
    return int(json.loads((device / "trust" / "root.json").read_text())["signed"]["version"])


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Root v1, made by a ceremony: keys init --unsigned, then each root key signs in place."""
    tmp_path = tmp_path_factory.mktemp("ceremony")
    a_key, a_pub = _gen("root-a", tmp_path / "machine-a")
    b_key, b_pub = _gen("root-b", tmp_path / "machine-b")
    rel_key, rel_pub = _gen("release", tmp_path / "keys")
    root = tmp_path / "root.json"
    made = _ok("keys", "init", "--unsigned", "--root-key", a_pub, "--root-key", b_pub,
               "--root-threshold", "2", "--release-key", rel_pub, "-o", root)
    assert made["signatures"] == 0
    r = run_airlock("keys", "verify-root", root)
    assert r.returncode == 3 and "root v1 root keys: 0 of 2" in r.stderr
    # An unsigned root is refused by a device.
    r = run_agent("--root", tmp_path / "early", "init", "--trust", root)
    assert r.returncode == 3
    for key in (a_key, b_key):
        _ok("keys", "sign-root", root, "--key", key, "--yes")
    assert _ok("keys", "verify-root", root)["ok"]
    return {"root": root, "a": a_key, "b": b_key, "release": rel_key, "release_pub": rel_pub,
            "dir": tmp_path}


def test_rotation_signed_on_two_machines_reaches_devices(v1: dict[str, Path],
                                                         tmp_path: Path) -> None:
    device = tmp_path / "device"
    assert run_agent("--root", device, "init", "--trust", v1["root"]).returncode == 0
    # The new root replaces root key B (machine B retires) with C, on a third machine.
    c_key, c_pub = _gen("root-c", tmp_path / "machine-c")
    a_pub = v1["a"].with_suffix(".pub")
    v2 = tmp_path / "root-v2.json"
    _ok("keys", "rotate", "--trust", v1["root"], "--unsigned", "--new-root-key", a_pub,
        "--new-root-key", c_pub, "--root-threshold", "2", "-o", v2)
    r = run_airlock("keys", "verify-root", v2, "--trust", v1["root"])
    assert r.returncode == 3
    assert "root v2 root keys: 0 of 2" in r.stderr and "root v1 root keys: 0 of 2" in r.stderr
    # Each machine signs its copy; the signatures travel back.
    sigs = []
    for name, key in (("a", v1["a"]), ("b", v1["b"]), ("c", c_key)):
        machine = tmp_path / f"machine-{name}"
        machine.mkdir(exist_ok=True)
        copy = machine / "root-v2.json"
        copy.write_bytes(v2.read_bytes())
        sig = machine / "sig.json"
        _ok("keys", "sign-root", "--detached", copy, "--key", key, "--trust", v1["root"],
            "-o", sig, "--yes")
        assert copy.read_bytes() == v2.read_bytes()
        sigs.append(sig)
    merged = _ok("keys", "sign-root", "--merge", *sigs[:2], v2, "--trust", v1["root"])
    assert merged["tallies"] == [
        {"keys": "root v2", "valid": 1, "threshold": 2, "complete": False},
        {"keys": "root v1", "valid": 2, "threshold": 2, "complete": True}]
    assert run_airlock("keys", "verify-root", v2, "--trust", v1["root"]).returncode == 3
    _ok("keys", "sign-root", "--merge", sigs[2], v2)
    assert _ok("keys", "verify-root", v2, "--trust", v1["root"])["ok"]
    # Devices learn it from the next bundle that carries it.
    bundle = tmp_path / "v2.airlock"
    spec = write_spec(tmp_path, sequence=2)
    _ok("build", spec, "--key", v1["release"], "--root", v2, "-o", bundle)
    assert agent_json(device, "install", bundle)["installed"]
    assert _root_version(device) == 2


def test_a_rotation_short_of_the_old_roots_threshold_installs_nowhere(
        v1: dict[str, Path], tmp_path: Path) -> None:
    device = tmp_path / "device"
    assert run_agent("--root", device, "init", "--trust", v1["root"]).returncode == 0
    c_key, c_pub = _gen("root-c", tmp_path / "machine-c")
    v2 = tmp_path / "root-v2.json"
    _ok("keys", "rotate", "--trust", v1["root"], "--unsigned", "--new-root-key", c_pub,
        "--root-threshold", "1", "-o", v2)
    _ok("keys", "sign-root", v2, "--key", c_key, "--yes")
    _ok("keys", "sign-root", v2, "--key", v1["a"], "--trust", v1["root"], "--yes")
    r = run_airlock("keys", "verify-root", v2, "--trust", v1["root"])
    assert r.returncode == 3 and "root v1 root keys: 1 of 2" in r.stderr
    bundle = tmp_path / "v2.airlock"
    _ok("build", write_spec(tmp_path, sequence=2), "--key", v1["release"], "--root", v2,
        "-o", bundle)
    r = run_agent("--root", device, "install", bundle)
    assert r.returncode == 3 and "old root's keys" in r.stderr
    assert _root_version(device) == 1


def test_revoking_a_lost_release_key(v1: dict[str, Path], tmp_path: Path) -> None:
    device = tmp_path / "device"
    assert run_agent("--root", device, "init", "--trust", v1["root"]).returncode == 0
    new_key, new_pub = _gen("release2", tmp_path / "keys")
    v2 = tmp_path / "root-v2.json"
    _ok("keys", "rotate", "--trust", v1["root"], "--unsigned", "--release-key", new_pub,
        "-o", v2)
    for key in (v1["a"], v1["b"]):
        _ok("keys", "sign-root", v2, "--key", key, "--trust", v1["root"], "--yes")
    bundle = tmp_path / "v2.airlock"
    _ok("build", write_spec(tmp_path, sequence=2), "--key", new_key, "--root", v2, "-o", bundle)
    assert agent_json(device, "install", bundle)["installed"]
    stolen = tmp_path / "stolen.airlock"
    _ok("build", write_spec(tmp_path, sequence=3), "--key", v1["release"], "-o", stolen)
    r = run_agent("--root", device, "install", stolen)
    assert r.returncode == 3 and "0 of 1 signatures required for role 'release'" in r.stderr


def test_only_root_keys_sign_roots(v1: dict[str, Path], tmp_path: Path) -> None:
    before = v1["root"].read_bytes()
    r = run_airlock("keys", "sign-root", v1["root"], "--key", v1["release"], "--yes")
    assert r.returncode == 2 and "not a root key" in r.stderr
    sig = tmp_path / "other.sig.json"
    # A signature over another root (a different version) is refused when merged.
    v2 = tmp_path / "root-v2.json"
    _ok("keys", "rotate", "--trust", v1["root"], "--unsigned", "-o", v2)
    _ok("keys", "sign-root", "--detached", v2, "--key", v1["a"], "-o", sig, "--yes")
    r = run_airlock("keys", "sign-root", "--merge", sig, v1["root"])
    assert r.returncode == 3 and "over other metadata" in r.stderr
    assert v1["root"].read_bytes() == before
