"""``sh install.sh`` on a device with no index for pip: install, use, repeat, refuse.

Everything the device runs has ``PYTHONPATH`` removed and pip pointed at no
index (tests/support/agentkit.py), so the agent that answers is the one the
kit installed, from the kit's wheels alone.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from keys.keyfile import generate_keypair, load_signer
from keys.metadata import ReleaseSerializer
from tests.support.agentkit import A, BuiltKit, Installed, KitDevice, device_env, unpack
from tests.support.cli import run_agent
from tests.support.keyset import Keys


def test_offline_install_then_install_and_roll_back_releases(
        installed: Installed, fresh: KitDevice, kits: Callable[[str], BuiltKit],
        make_bundle: Callable[..., Path]) -> None:
    # The session's install (tests/kit/conftest.py) ran with hostile modules in
    # install.sh's working directory and on PYTHONPATH: none of them ran.
    r = installed.result
    assert r.returncode == 0, r.stderr
    assert not installed.hostile_ran.exists(), installed.hostile_ran.read_text()
    size = kits("a").kit.stat().st_size / 2**20
    print(f"\noffline install of a {size:.1f} MiB kit: {installed.seconds:.1f} s")

    device = fresh
    me = device.json("--version")
    assert (me["version"], me["installed_from"], me["home"]) == (A, "kit", str(device.prefix))
    # The agent imports its own installed code, not this checkout.
    python = device.prefix / "current" / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import agent, onnxruntime; print(agent.__file__)"],
                           capture_output=True, text=True, env=device_env(), cwd="/")
    assert Path(where.stdout.strip()).resolve().is_relative_to(device.prefix / "agents"), where

    # install.sh ran init; the demo's journey works with this agent.
    v1, v2 = make_bundle(sequence=1), make_bundle(sequence=2, scale=3.0)
    wrong = make_bundle(sequence=3, wrong=True)
    assert device.json("install", v1)["active"] == "vision-1"
    assert device.json("install", v2)["active"] == "vision-2"
    r = device.agent("install", wrong)
    assert r.returncode == 4, r.stderr
    assert "vision-2 stays active" in r.stderr
    assert device.json("rollback")["active"] == "vision-1"
    status = device.json("status")
    assert status["device_id"] == "cam-7" and status["active"]["id"] == "vision-1"
    assert status["agent"]["version"] == A and status["agent"]["kit"] == device.link("current")
    assert device.json("history", "--verify")["verified"]
    assert device.json("fsck")["ok"]
    # The kit's systemd unit is installed with this device's paths.
    unit = (device.dir / "systemd" / "airlock-agent.service").read_text()
    assert f"\nExecStart={device.prefix}/bin/airlock-agent serve " in unit
    assert f"\nEnvironment=AIRLOCK_ROOT={device.root}\n" in unit


def test_a_second_run_changes_nothing_and_a_third_repairs(
        fresh: KitDevice, kits: Callable[[str], BuiltKit], keyset: Keys) -> None:
    kit, device = kits("a").kit, fresh
    agents, current = device.agents(), device.link("current")
    r = device.install_sh(kit, "--trust", keyset.trust)
    assert r.returncode == 0, r.stderr
    assert "installed and whole" in r.stderr and "already active" in r.stdout
    assert (device.agents(), device.link("current")) == (agents, current)

    # Damage the installed agent: a file of its own code goes missing.
    cli = next((device.prefix / "current").glob("lib/python3*/site-packages/agent/cli.py"))
    cli.unlink()
    assert device.agent("--version").returncode != 0
    r = device.install_sh(kit, "--trust", keyset.trust)
    assert r.returncode == 0, r.stderr
    assert "rebuilding" in r.stderr
    assert device.version() == A and device.link("current") == current


def _tampered(kit_dir: Path, dest: Path, how: str, keyset: Keys) -> Path:
    shutil.copytree(kit_dir, dest)
    wheel = next(p for p in sorted((dest / "wheels").iterdir()) if "numpy" in p.name)
    if how == "byte flipped in a wheel":
        data = bytearray(wheel.read_bytes())
        data[len(data) // 2] ^= 0x01
        wheel.write_bytes(bytes(data))
    elif how == "a file added":
        (dest / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"PK")
    elif how == "kit.json re-signed by an unknown key":
        rogue, _ = generate_keypair("rogue", dest.parent / "rogue-keys", force=True)
        doc = json.loads((dest / "kit.json").read_bytes())
        from tuf.api.metadata import Metadata

        md = Metadata.from_dict(doc)
        md.signatures.clear()
        md.sign(load_signer(rogue), signed_serializer=ReleaseSerializer())
        (dest / "kit.json").write_bytes(md.to_bytes())
    elif how == "kit.json edited to match a swapped wheel":
        doc = json.loads((dest / "kit.json").read_bytes())
        target = doc["signed"]["targets"][f"wheels/{wheel.name}"]
        wheel.write_bytes(b"PK not numpy")
        target["length"] = wheel.stat().st_size
        import hashlib

        target["hashes"]["sha256"] = hashlib.sha256(wheel.read_bytes()).hexdigest()
        (dest / "kit.json").write_text(json.dumps(doc))
    return dest


def test_a_tampered_kit_is_refused_before_anything_is_installed(
        kits: Callable[[str], BuiltKit], keyset: Keys, tmp_path: Path) -> None:
    kit_dir = unpack(kits("a").kit, tmp_path / "good")
    cases = {
        "byte flipped in a wheel": "numpy",
        "a file added": "evil-1.0-py3-none-any.whl' is not listed",
        "kit.json re-signed by an unknown key": "0 valid signature(s) of the 1 required",
        "kit.json edited to match a swapped wheel": "0 valid signature(s) of the 1 required",
    }
    for n, (how, says) in enumerate(cases.items()):
        bad = _tampered(kit_dir, tmp_path / f"bad{n}", how, keyset)
        device = KitDevice(tmp_path / f"site{n}")
        r = device.install_sh(Path("unused"), "--trust", keyset.trust, kit_dir=bad)
        assert r.returncode == 3, (how, r.stderr)
        assert "refused" in r.stderr and says in r.stderr, (how, r.stderr)
        assert not device.prefix.exists() and not device.root.exists(), how
        assert not device.bin.exists(), how

    # The right kit against another organisation's trust root: refused too.
    other = tmp_path / "other-org"
    from tests.support.keyset import make_keyset

    foreign = make_keyset(other)
    device = KitDevice(tmp_path / "site-other")
    r = device.install_sh(Path("unused"), "--trust", foreign.trust, kit_dir=kit_dir)
    assert r.returncode == 3 and "valid signature" in r.stderr, r.stderr
    assert not device.prefix.exists()
    # And without any trust root there is nothing to check against: usage error.
    r = device.install_sh(Path("unused"), kit_dir=kit_dir)
    assert r.returncode == 2 and "--trust" in r.stderr


def test_a_device_that_trusts_another_root_is_refused_unless_rotated(
        kits: Callable[[str], BuiltKit], keyset: Keys, tmp_path: Path) -> None:
    # A device of another organisation (its own root) already at ROOT: the kit's
    # root.json (--trust) is neither silently ignored nor silently taken.
    from keys.keyfile import load_public_key
    from keys.trust import TrustRoot, rotate_root
    from tests.support.keyset import make_keyset

    foreign = make_keyset(tmp_path / "other-org")
    device = KitDevice(tmp_path / "site")
    assert run_agent("--root", device.root, "init", "--trust", foreign.trust).returncode == 0
    device_root = device.root / "trust" / "root.json"
    r = device.install_sh(kits("a").kit, "--trust", keyset.trust)
    assert r.returncode == 5, r.stderr
    assert r.stderr.count("\n") == 1 and "already trusts another root" in r.stderr, r.stderr
    assert str(device_root) in r.stderr and f"--trust {keyset.trust}" in r.stderr
    assert not device.prefix.exists() and device_root.read_bytes() == foreign.trust.read_bytes()
    # Without --trust the device's own root checks the kit, and the refusal names it.
    r = device.install_sh(kits("a").kit)
    assert r.returncode == 3 and f"(trust root {device_root})" in r.stderr, r.stderr

    # A proper rotation of the device's root (the next version, signed by the old root
    # key) that trusts our release key: taken, and the device's root rotates with it.
    rotated = rotate_root(TrustRoot.from_bytes(foreign.trust.read_bytes()),
                          [load_signer(foreign.root_key)],
                          release_keys=[load_public_key(keyset.release_pub)])
    (tmp_path / "rotated.json").write_bytes(rotated.to_bytes())
    r = device.install_sh(kits("a").kit, "--trust", tmp_path / "rotated.json")
    assert r.returncode == 0, r.stderr
    assert "trust root of" in r.stdout and "rotated to version 2" in r.stdout
    assert TrustRoot.from_bytes(device_root.read_bytes()).version == 2
    assert device.json("status")["agent"]["version"] == A


def test_a_unit_it_did_not_write_is_kept_and_the_next_commands_are_said(
        fresh: KitDevice, kits: Callable[[str], BuiltKit], keyset: Keys, tmp_path: Path) -> None:
    kit, device = kits("a").kit, fresh
    unit = device.dir / "systemd" / "airlock-agent.service"
    mine = "[Service]\nExecStart=/usr/local/bin/my-own-agent --tuned\n"
    unit.write_text(mine)  # the site's own unit, not install.sh's
    r = device.install_sh(kit, "--trust", keyset.trust)
    assert r.returncode == 0, r.stderr
    kept = list(unit.parent.glob("airlock-agent.service.orig-*"))
    assert len(kept) == 1 and kept[0].read_text() == mine
    assert f"kept the unit that was there (not written by install.sh) as {kept[0]}" in r.stdout
    assert f"\nExecStart={device.prefix}/bin/airlock-agent serve " in unit.read_text()
    assert r.stdout.rstrip().endswith(
        "next: systemctl daemon-reload && systemctl enable --now airlock-agent.service")
    # Its own unit is simply rewritten on the next run: nothing more is kept.
    assert device.install_sh(kit, "--trust", keyset.trust).returncode == 0
    assert len(list(unit.parent.glob("airlock-agent.service.orig-*"))) == 1

    # An explicit --systemd-dir that does not exist is a usage error, before anything.
    r = device.install_sh(kit, "--systemd-dir", tmp_path / "no-such-dir")
    assert r.returncode == 2 and f"--systemd-dir {tmp_path / 'no-such-dir'} does not exist" \
        in r.stderr, r.stderr

    # --enable runs the next commands (systemctl, here a stand-in that records its calls:
    # this machine's systemd is not the test's to start services with).
    fake = tmp_path / "fakebin"
    fake.mkdir()
    calls = tmp_path / "systemctl-calls"
    (fake / "systemctl").write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n")
    (fake / "systemctl").chmod(0o755)
    import os

    r = device.install_sh(kit, "--enable", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    assert calls.read_text().splitlines() == ["daemon-reload",
                                              "enable --now airlock-agent.service"]
    assert "started: systemctl daemon-reload && systemctl enable --now" in r.stdout


def _on_a_terminal(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``cmd`` with stdout and stderr on a pseudo-terminal, as a person at a console sees it."""
    person, terminal = pty.openpty()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                         env=env, cwd=cwd)
    os.close(terminal)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(person, 65536)
        except OSError:  # EIO: every holder of the terminal's other side has closed it
            break
        if not chunk:
            break
        seen += chunk
    os.close(person)
    return p.wait(timeout=900), seen.decode(errors="replace")


def test_a_person_at_a_terminal_sees_the_wheels_go_in_a_script_does_not(
        installed: Installed, kits: Callable[[str], BuiltKit], keyset: Keys,
        tmp_path: Path) -> None:
    # The session's install ran with its output captured (no terminal): our lines only.
    assert "Installing collected packages" not in installed.result.stdout + installed.result.stderr
    kit_dir = unpack(kits("a").kit, tmp_path / "media")
    device = KitDevice(tmp_path / "console")
    (device.dir / "systemd").mkdir(parents=True)
    code, seen = _on_a_terminal(
        ["sh", str(kit_dir / "install.sh"), "--prefix", str(device.prefix), "--root",
         str(device.root), "--bin-dir", str(device.dir / "bin"), "--systemd-dir",
         str(device.dir / "systemd"), "--trust", str(keyset.trust), "--device-id", "cam-9"],
        device_env(), device.dir)
    assert code == 0, seen[-2000:]
    # pip names what it installs: the long step is not a silent wait.
    assert "Installing collected packages" in seen and "onnxruntime" in seen, seen[-2000:]
    assert f"agent {A} is active in {device.prefix}" in seen, seen[-2000:]
