"""Each input is hashed once per build (issue 14): stamped copies and pull-cache records.

The bundle writer copies a file unhashed only while it stamps as it did when
hashed; the pull cache trusts an entry only while it stamps as recorded when
verified. Either way a changed file is hashed again and caught.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from pathlib import Path

import pytest

import bundler.build.cache
from airlock.errors import DigestError
from airlock.format.writer import SourceFile, write_bundle
from bundler.build.artifacts import LayoutBuilder, hash_stamped
from bundler.build.cache import BlobCache

_OLD = time.time() - 3600


def _old_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.utime(path, (_OLD, _OLD))
    return path


def _layout(*paths: Path) -> list[SourceFile]:
    contents = LayoutBuilder()
    for p in paths:
        contents.add_file("application/octet-stream", p)
    return contents.source_files()


def test_stamped_copy_is_the_hashed_copy_byte_for_byte(tmp_path: Path) -> None:
    big = _old_file(tmp_path / "big", os.urandom(3 * 1024 * 1024 + 7))
    small = _old_file(tmp_path / "small", b"x" * 1000)
    files = _layout(big, small)
    assert all(f.stamp is not None for f in files[2:])
    unstamped = [SourceFile(f.path, f.size, f.sha256, f.open) for f in files]
    stamped_out, hashed_out = tmp_path / "a.tar", tmp_path / "b.tar"
    for out, fs in ((stamped_out, files), (hashed_out, unstamped)):
        with out.open("wb") as f:
            write_bundle(f, b'{"signed": {}}', fs)
    assert stamped_out.read_bytes() == hashed_out.read_bytes()
    # A stream without a file descriptor (the part writer) takes the Python copy.
    mem = io.BytesIO()
    write_bundle(mem, b'{"signed": {}}', files)
    assert mem.getvalue() == stamped_out.read_bytes()
    with tarfile.open(stamped_out) as t:
        for m in t.getmembers()[3:]:
            data = t.extractfile(m).read()  # type: ignore[union-attr]
            assert m.name.endswith(hashlib.sha256(data).hexdigest())


def test_file_changed_after_hashing_fails_the_write(tmp_path: Path) -> None:
    model = _old_file(tmp_path / "model", b"a" * 100_000)
    files = _layout(model)
    assert files[-1].stamp is not None
    with model.open("r+b") as f:  # same size, other bytes: the mtime moves
        f.write(b"b")
    with pytest.raises(DigestError, match="changed while the bundle was written"):
        write_bundle(io.BytesIO(), b"{}", files)


def test_fresh_file_is_not_stamped(tmp_path: Path) -> None:
    """Racily clean: a write in the same clock tick would leave the mtime unchanged."""
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"new")
    hexdigest, size, stamp = hash_stamped(fresh)
    assert stamp is None and size == 3 and hexdigest == hashlib.sha256(b"new").hexdigest()


def _no_hashing(*_: object) -> object:
    raise AssertionError("hashed a cache entry its record vouches for")


def _download(data: bytes, calls: list[Path]):  # type: ignore[no-untyped-def]
    def download(dest: Path) -> None:
        calls.append(dest)
        _old_file(dest, data)  # older than the record written after it

    return download


def test_cache_hit_trusts_its_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(5000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    calls: list[Path] = []
    first = BlobCache(tmp_path)
    path = first.fetch(digest, len(data), _download(data, calls))
    assert len(calls) == 1 and digest in first.verified
    monkeypatch.setattr(bundler.build.cache, "hash_stamped", _no_hashing)
    second = BlobCache(tmp_path)
    assert second.fetch(digest, len(data), _download(data, calls)) == path
    assert len(calls) == 1 and second.hits == 1 and second.hashed_bytes == 0
    assert second.verified[digest] == first.verified[digest]


def test_changed_or_racy_entry_is_hashed_again(tmp_path: Path) -> None:
    data = os.urandom(5000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    calls: list[Path] = []
    path = BlobCache(tmp_path).fetch(digest, len(data), _download(data, calls))
    # Same size, other bytes, a new mtime: hashed, dropped, downloaded again.
    damaged = bytearray(data)
    damaged[10] ^= 0xFF
    path.write_bytes(bytes(damaged))
    cache = BlobCache(tmp_path)
    cache.fetch(digest, len(data), _download(data, calls))
    assert len(calls) == 2 and cache.downloaded_bytes == len(data)
    assert path.read_bytes() == data
    # A record no newer than its entry is racily clean: the entry is hashed.
    record = tmp_path / "verified/sha256" / digest[7:]
    st = path.stat()
    os.utime(record, ns=(st.st_mtime_ns, st.st_mtime_ns))
    cache = BlobCache(tmp_path)
    cache.fetch(digest, len(data), _download(data, calls))
    assert len(calls) == 2 and cache.hits == 1 and cache.hashed_bytes == len(data)


def test_blob_is_verified_once_per_build(tmp_path: Path) -> None:
    """A layer two images share: hashed the first time, trusted the second (no record)."""
    data = os.urandom(5000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    cache = BlobCache(tmp_path)
    cache.path(digest).parent.mkdir(parents=True)
    _old_file(cache.path(digest), data)
    calls: list[Path] = []
    for _ in range(2):
        cache.fetch(digest, len(data), _download(data, calls))
    assert calls == [] and cache.hits == 2 and cache.hashed_bytes == len(data)
