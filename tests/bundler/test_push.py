"""`airlock fleet push` against real OpenSSH servers on 127.0.0.1: bundles and parts arrive
checked, a copy cut off mid-file resumes with only the rest (and a tampered prefix is not
trusted), and host keys are checked strictly: unknown refused unless accepted, changed always."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bundler.fleet.push import push_files
from bundler.fleet.ssh import Login, Target
from scripts.ocikit import free_port
from tests.support.cli import run_airlock
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec
from tests.support.sshd import Sshd, keygen, need_sshd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundle(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 8 MiB bundle, and its parts of 3 MiB beside it."""
    need_sshd()
    work = tmp_path_factory.mktemp("push")
    out = build(write_spec(work, sequence=1, pad_mb=8), work / "vision-1.airlock",
                [keyset.release_key])
    assert run_airlock("split", out, "--max-size", "3MiB").returncode == 0
    return out


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Sshd]:
    with Sshd.start(tmp_path / "cam-7") as server:
        yield server


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _push(server: Sshd, what: Path, *hosts: str, known: Path, dest: Path,
          extra: tuple[str, ...] = ()) -> tuple[int, dict[str, Any], str]:
    p = run_airlock("fleet", "push", what, *(hosts or (server.address,)), "--user", server.user,
                    "--identity", server.identity, "--known-hosts", known, "--dest", dest,
                    "--json", *extra)
    return p.returncode, json.loads(p.stdout) if p.stdout else {}, p.stderr


def test_push_bundle_and_parts_to_two_devices_and_again(bundle: Path, tmp_path: Path,
                                                        device: Sshd) -> None:
    # cam-8 has no shell (an SFTP-only account): what arrived is hashed by reading it back.
    with Sshd.start(tmp_path / "cam-8", identity=device.identity, sftp_only=True) as other:
        known = tmp_path / "known_hosts"
        known.write_text(device.known_hosts_line() + other.known_hosts_line())
        dest = Path("incoming")  # relative: under each device's own home
        code, out, err = _push(device, bundle, device.address, other.address, known=known,
                               dest=dest)
        assert code == 0 and out["ok"], err
        assert [h["bytes_sent"] for h in out["hosts"]] == [bundle.stat().st_size] * 2
        for server in (device, other):
            assert _sha(server.home / dest / bundle.name) == _sha(bundle)
        # The parts, and parts.json last; a second push finds everything there and sends nothing.
        manifest = bundle.with_name(bundle.name + ".parts.json")
        for _ in range(2):
            code, out, err = _push(device, manifest, device.address, other.address,
                                   known=known, dest=dest / "parts")
            assert code == 0, err
        for host in out["hosts"]:
            files = host["files"]
            assert [f["name"] for f in files][-1] == manifest.name and len(files) == 4
            assert all(f["already_there"] and f["sent"] == 0 for f in files)
        assert not list((other.home / dest / "parts").glob(".*partial"))
        # One device down: the other still gets it; exit 5 names the one that failed.
        down = f"127.0.0.1:{free_port()}"
        code, out, err = _push(device, bundle, down, device.address, known=known,
                               dest=dest / "again")
        assert code == 5 and down in err and err.count("\n") == 1, err
        assert [h["ok"] for h in out["hosts"]] == [False, True]


def test_a_push_cut_off_mid_file_resumes_with_only_the_rest(bundle: Path, tmp_path: Path,
                                                            device: Sshd) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(device.known_hosts_line())
    dest = tmp_path / "incoming"
    size = bundle.stat().st_size
    seen = 0

    def cut(host: str, n: int) -> None:
        nonlocal seen
        seen += n
        if seen >= size // 2 and device.drop_connections():
            pass  # the device's session is gone; the next writes fail

    login = Login(device.user, device.identity, known)
    first = push_files(Target.parse(device.address), [bundle], login, str(dest), cut)
    assert not first.ok and first.exit_code == 5 and "push again to resume" in (first.error or "")
    partial = dest / f".{bundle.name}.partial"
    arrived = partial.stat().st_size
    assert 0 < arrived < size and not (dest / bundle.name).exists()
    code, out, err = _push(device, bundle, known=known, dest=dest)
    assert code == 0, err
    [f] = out["hosts"][0]["files"]
    assert f["resumed_from"] == arrived and f["sent"] == size - arrived  # only the rest travelled
    assert _sha(dest / bundle.name) == _sha(bundle) and not partial.exists()


def test_a_tampered_prefix_on_the_device_is_not_trusted(bundle: Path, tmp_path: Path,
                                                        device: Sshd) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(device.known_hosts_line())
    dest = tmp_path / "incoming"
    dest.mkdir()
    partial = dest / f".{bundle.name}.partial"
    data = bytearray(bundle.read_bytes()[:3_000_000])
    data[1000] ^= 0xFF  # what a bad stick, a bad disk or a person left there
    partial.write_bytes(bytes(data))
    code, out, err = _push(device, bundle, known=known, dest=dest)
    assert code == 0, err
    [f] = out["hosts"][0]["files"]
    assert f["resumed_from"] == 0 and f["sent"] == bundle.stat().st_size
    assert _sha(dest / bundle.name) == _sha(bundle)


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


def test_unknown_host_is_refused_unless_accepted_then_recorded(bundle: Path, tmp_path: Path,
                                                               device: Sshd) -> None:
    known, dest = tmp_path / "known_hosts", tmp_path / "incoming"
    known.write_text("")
    code, _, err = _push(device, bundle, known=known, dest=dest)
    fp = _fingerprint(device.host_key.with_suffix(".pub"))
    assert code == 3 and f"[127.0.0.1]:{device.port}" in err and fp in err, err
    assert "--accept-new-hosts" in err and not dest.exists()
    code, out, err = _push(device, bundle, known=known, dest=dest, extra=("--accept-new-hosts",))
    assert code == 0 and fp in out["hosts"][0]["recorded_host_keys"][0], err
    assert device.host_key.with_suffix(".pub").read_text().split()[1] in known.read_text()
    code, _, err = _push(device, bundle, known=known, dest=dest)  # now known: no flag needed
    assert code == 0, err


def test_a_changed_host_key_is_always_refused(bundle: Path, tmp_path: Path,
                                              device: Sshd) -> None:
    impostor = keygen(tmp_path / "old_host_key")  # the key known_hosts remembers
    known, dest = tmp_path / "known_hosts", tmp_path / "incoming"
    known.write_text(device.known_hosts_line(impostor.with_suffix(".pub")))
    before = known.read_text()
    code, _, err = _push(device, bundle, known=known, dest=dest, extra=("--accept-new-hosts",))
    assert code == 3 and "changed" in err, err
    assert _fingerprint(device.host_key.with_suffix(".pub")) in err
    assert _fingerprint(impostor.with_suffix(".pub")) in err
    assert known.read_text() == before and not dest.exists()
