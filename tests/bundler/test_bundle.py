"""Build -> verify -> inspect through the real CLI, and every way a bundle can be wrong."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

import pytest

from airlock.errors import DigestError
from airlock.format.bundle import BundleReader
from airlock.format.layout_check import FileInfo
from airlock.limits import PIPELINE_MIN_BYTES
from tests.support.cli import run_airlock
from tests.support.keyset import Keys
from tests.support.spec import write_spec


def _rewrite(
    src: Path, dst: Path, edit: Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]
) -> Path:
    """Copy a bundle member by member through ``edit`` (which may add, drop or change members)."""
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(src) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            members.append((m, f.read() if f else b""))
    edit(members)
    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tar:
        for m, data in members:
            tar.addfile(m, io.BytesIO(data) if m.isreg() else None)
    return dst


def _verify(bundle: Path, keys: Keys) -> tuple[int, str]:
    r = run_airlock("verify", bundle, "--trust", keys.trust)
    assert "Traceback" not in r.stderr
    return r.returncode, r.stderr.strip()


def test_build_verify_inspect_round_trip(keyset: Keys, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, extra={"flags": {"threshold": 0.5}, "rings": ["canary"]})
    out = tmp_path / "v1.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    built = json.loads(r.stdout)
    assert built["name"] == "vision" and built["blobs"] == 5 and out.stat().st_size == built["size"]

    r = run_airlock("verify", out, "--trust", keyset.trust, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["role"] == "release"

    r = run_airlock("inspect", out, "--json")
    info = json.loads(r.stdout)
    assert info["models"][0]["name"] == "detector" and info["models"][0]["golden"]
    assert info["flags"] == {"threshold": 0.5} and info["rings"] == ["canary"]
    assert info["metadata_sha256"] == built["metadata_sha256"]

    with tarfile.open(out) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert names[0] == "airlock/release.json" and names[1:3] == ["oci-layout", "index.json"]
    assert (
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        == "models/detector:1.0"
    )


def test_build_is_reproducible(
    keyset: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(tmp_path)
    # An hour ago: a build dated far back would be expired today, and is refused (exit 2).
    env = {"SOURCE_DATE_EPOCH": str(int(time.time()) - 3600)}
    a, b = tmp_path / "a.airlock", tmp_path / "b.airlock"
    for out in (a, b):
        assert (
            run_airlock("build", spec, "--key", keyset.release_key, "-o", out, env=env).returncode
            == 0
        )
    assert a.read_bytes() == b.read_bytes()


def test_threshold_of_several_keys(keyset: Keys, tmp_path: Path) -> None:
    keydir = tmp_path / "k"
    for name in ("root", "a", "b"):
        assert run_airlock("keys", "generate", name, "--dir", keydir, "--no-passphrase").returncode == 0
    trust = tmp_path / "root.json"
    r = run_airlock(
        "keys",
        "init",
        "--root-key",
        keydir / "root.key",
        "--release-key",
        keydir / "a.pub",
        "--release-key",
        keydir / "b.pub",
        "--release-threshold",
        "2",
        "-o",
        trust,
    )
    assert r.returncode == 0, r.stderr
    spec = write_spec(tmp_path)
    one, two = tmp_path / "one.airlock", tmp_path / "two.airlock"
    run_airlock("build", spec, "--key", keydir / "a.key", "-o", one)
    run_airlock("build", spec, "--key", keydir / "a.key", "--key", keydir / "b.key", "-o", two)
    assert run_airlock("verify", two, "--trust", trust).returncode == 0
    r = run_airlock("verify", one, "--trust", trust)
    assert r.returncode == 3 and "1 of 2 signatures" in r.stderr


def test_wrong_key_and_expired(keyset: Keys, tmp_path: Path) -> None:
    assert run_airlock("keys", "generate", "other", "--dir", tmp_path, "--no-passphrase").returncode == 0
    spec = write_spec(tmp_path)
    out = tmp_path / "b.airlock"
    run_airlock("build", spec, "--key", tmp_path / "other.key", "-o", out)
    code, err = _verify(out, keyset)
    assert code == 3 and "unknown key" in err

    # A reproducible build of 2020 would be stale now: refused at the desk, nothing written.
    old = write_spec(tmp_path, sequence=2, expires="1d")
    stale = tmp_path / "stale.airlock"
    r = run_airlock("build", old, "--key", keyset.release_key, "-o", stale,
                    env={"SOURCE_DATE_EPOCH": "1577836800"})
    assert r.returncode == 2 and "SOURCE_DATE_EPOCH dates the build 2020-01-01" in r.stderr
    assert not stale.exists()


def test_rotation_through_the_cli(keyset: Keys, tmp_path: Path) -> None:
    run_airlock("keys", "generate", "root2", "--dir", tmp_path, "--no-passphrase")
    v2 = tmp_path / "root-v2.json"
    r = run_airlock(
        "keys",
        "rotate",
        "--trust",
        keyset.trust,
        "--root-key",
        keyset.root_key,
        "--new-root-key",
        tmp_path / "root2.key",
        "-o",
        v2,
        "--json",
    )
    assert r.returncode == 0, r.stderr and json.loads(r.stdout)["version"] == 2
    # A bundle can carry the rotated root; a device holding v1 follows it.
    spec = write_spec(tmp_path)
    out = tmp_path / "rot.airlock"
    assert (
        run_airlock("build", spec, "--key", keyset.release_key, "--root", v2, "-o", out).returncode
        == 0
    )
    assert _verify(out, keyset)[0] == 0
    assert json.loads(run_airlock("inspect", out, "--json").stdout)["carries_root"]
    # Rotating without the old root key is refused before anything is written.
    bad = tmp_path / "bad.json"
    r = run_airlock(
        "keys", "rotate", "--trust", keyset.trust, "--root-key", tmp_path / "root2.key", "-o", bad
    )
    assert r.returncode == 3 and not bad.exists()


@pytest.fixture
def good(keyset: Keys, make_bundle: Callable[..., Path]) -> Path:
    return make_bundle()


def _blob_names(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[int]:
    return [i for i, (m, _) in enumerate(members) if m.name.startswith("blobs/")]


def test_tampered_blob_byte(good: Path, keyset: Keys, tmp_path: Path) -> None:
    def flip(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        i = max(_blob_names(members), key=lambda i: members[i][0].size)
        m, data = members[i]
        members[i] = (m, data[:10] + bytes([data[10] ^ 1]) + data[11:])

    code, err = _verify(_rewrite(good, tmp_path / "t.airlock", flip), keyset)
    assert code == 3 and "sha256 is" in err and "blobs/sha256/" in err


def test_tampered_metadata_byte(good: Path, keyset: Keys, tmp_path: Path) -> None:
    def edit(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        m, data = members[0]
        members[0] = (m, data.replace(b'"version":"1.0"', b'"version":"6.6"'))
        assert members[0][1] != data

    code, err = _verify(_rewrite(good, tmp_path / "t.airlock", edit), keyset)
    assert code == 3 and "0 of 1 signatures" in err


def test_extra_member(good: Path, keyset: Keys, tmp_path: Path) -> None:
    def add(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        ti = tarfile.TarInfo("blobs/sha256/" + "ab" * 32)
        ti.size = 4
        members.append((ti, b"evil"))

    code, err = _verify(_rewrite(good, tmp_path / "t.airlock", add), keyset)
    assert code == 3 and "not listed in the signed metadata" in err


def test_missing_blob(good: Path, keyset: Keys, tmp_path: Path) -> None:
    def drop(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        del members[_blob_names(members)[-1]]

    code, err = _verify(_rewrite(good, tmp_path / "t.airlock", drop), keyset)
    assert code == 3 and "bundle lacks blobs/sha256/" in err


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("dotdot", "unsafe path"),
        ("absolute", "unsafe path"),
        ("symlink", "is a link"),
        ("hardlink", "is a link"),
        ("device", "special file"),
        ("directory", "directory"),
    ],
)
def test_hostile_members(good: Path, keyset: Keys, tmp_path: Path, kind: str, message: str) -> None:
    def add(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        names = {"dotdot": "blobs/../../etc/passwd", "absolute": "/etc/passwd"}
        ti = tarfile.TarInfo(names.get(kind, "blobs/sha256/" + "cd" * 32))
        if kind in names:
            ti.size = 4
            members.insert(1, (ti, b"root"))
            return
        ti.type = {
            "symlink": tarfile.SYMTYPE,
            "hardlink": tarfile.LNKTYPE,
            "device": tarfile.CHRTYPE,
            "directory": tarfile.DIRTYPE,
        }[kind]
        ti.linkname = "/etc/shadow"
        members.insert(1, (ti, b""))

    code, err = _verify(_rewrite(good, tmp_path / "t.airlock", add), keyset)
    assert code == 3 and message in err, err


def test_truncated_bundle(good: Path, keyset: Keys, tmp_path: Path) -> None:
    data = good.read_bytes()
    for cut in (len(data) // 2, 700, 100):
        t = tmp_path / f"cut{cut}.airlock"
        t.write_bytes(data[:cut])
        code, err = _verify(t, keyset)
        assert code == 3 and ("truncated" in err or "lacks" in err or "corrupt" in err), err


def test_verify_reads_from_a_pipe(good: Path, keyset: Keys) -> None:
    r = run_airlock("verify", "-", "--trust", keyset.trust, input=good.read_bytes())
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("yaml_text", "field", "code"),
    [
        (
            "name: v\nversion: '1'\nsequence: 1\nmodels:\n  - name: m\n    path: nope.onnx\n",
            "models[0].path",
            2,
        ),
        ("name: v\nversion: '1'\nsequence: one\nmodels: []\n", "sequence", 2),
        ("name: v\nversion: '1'\nsequence: 1\ncolour: red\nmodels: []\n", "colour", 2),
        (
            "name: v\nversion: '1'\nsequence: 1\nmodels:\n  - name: m\n    path: m.onnx\n    health:\n      rtol: x\n",
            "models[0].health.rtol",
            2,
        ),
        ("name: v\nversion: [\n", "(yaml)", 2),
    ],
)
def test_bad_spec_names_the_field(
    keyset: Keys, tmp_path: Path, yaml_text: str, field: str, code: int
) -> None:
    (tmp_path / "m.onnx").write_bytes(b"x")
    spec = write_spec(tmp_path, text=yaml_text, file_name="airlock.yaml")
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "o.airlock")
    assert r.returncode == code
    assert f"'{field}'" in r.stderr and "airlock.yaml:" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o.airlock").exists()


def test_errors_are_one_line(tmp_path: Path) -> None:
    r = run_airlock("verify", tmp_path / "nope.airlock", "--trust", tmp_path / "root.json")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = run_airlock("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr


# -- the reader's threads: several blobs at once, verdicts in archive order ----------


def _tar_of_blobs(path: Path, blobs: list[bytes]) -> dict[str, FileInfo]:
    """A bundle-shaped tar (unsigned metadata, then ``blobs``) and its listing."""
    listed: dict[str, FileInfo] = {}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        slot = b"{}" + b" " * 509 + b"\n"
        ti = tarfile.TarInfo("airlock/release.json")
        ti.size = len(slot)
        tar.addfile(ti, io.BytesIO(slot))
        for data in blobs:
            hexd = hashlib.sha256(data).hexdigest()
            ti = tarfile.TarInfo(f"blobs/sha256/{hexd}")
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
            listed[ti.name] = FileInfo(len(data), hexd)
    return listed


def _lie(listed: dict[str, FileInfo], index: int) -> str:
    name = list(listed)[index]
    listed[name] = FileInfo(listed[name].length, "0" * 64)
    return name


@pytest.mark.parametrize("source", ["file", "pipe"])
def test_first_bad_blob_is_reported_whichever_thread_finds_it(tmp_path: Path,
                                                              source: str) -> None:
    """Blobs hashed at once are judged in archive order: the first bad one is named,
    though a later, smaller one fails first; a truncation further on comes after it."""
    big = PIPELINE_MIN_BYTES + 12345  # hashed on a thread beside its reader
    blobs = [os.urandom(n) for n in (3 * big, 2 * big, 4096, big)]
    bundle = tmp_path / "b.tar"
    listed = _tar_of_blobs(bundle, blobs)
    first = _lie(listed, 1)
    _lie(listed, 2)
    data = bundle.read_bytes()
    bundle.write_bytes(data[: len(data) - 1024 - big // 2])  # cut inside the last blob
    with bundle.open("rb") as f:
        stream: io.IOBase = f if source == "file" else _Pipe(f)
        reader = BundleReader(cast(IO[bytes], stream))
        reader.head()
        with pytest.raises(DigestError, match=first.rsplit("/", 1)[1]):
            for member in reader.files(listed):
                member.verify()


def test_blobs_delivered_by_threads_are_whole_and_settled_when_the_loop_ends(
        tmp_path: Path) -> None:
    blobs = [os.urandom(n) for n in (PIPELINE_MIN_BYTES * 2 + 1, 100, PIPELINE_MIN_BYTES, 7)]
    bundle = tmp_path / "b.tar"
    listed = _tar_of_blobs(bundle, blobs)
    got: dict[str, io.BytesIO] = {}
    finished: list[tuple[str, BaseException | None]] = []
    progress: list[int] = []
    with bundle.open("rb") as f:
        reader = BundleReader(f)
        reader.head()
        for member in reader.files(listed):
            out = got.setdefault(member.path, io.BytesIO())

            def finish(error: BaseException | None, path: str = member.path) -> None:
                finished.append((path, error))

            member.deliver(out.write, progress.append, finish)
    assert sorted(finished) == sorted((p, None) for p in listed)
    assert [got[p].getvalue() for p in listed] == blobs
    assert sum(progress) == sum(map(len, blobs))


class _Pipe(io.RawIOBase):
    """A file seen as a pipe: readable, not seekable."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self.f.readinto(b)  # type: ignore[attr-defined, no-any-return]
