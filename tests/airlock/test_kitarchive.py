"""The agent kit tar (airlock/format/kitarchive.py): reproducible to write, refusing anything unlisted to read."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from airlock.errors import DigestError, FormatError
from airlock.format.bundle import FileInfo
from airlock.format.kitarchive import KitMember, KitReader, write_kit

TOP = "airlock-agent-kit-0.2.0-linux-amd64-py3.11"
KIT_JSON = b'{"signed": "not checked here"}'
MEMBERS = [KitMember("install.sh", b"#!/bin/sh\necho hi\n", executable=True),
           KitMember("wheels/a-1.0-py3-none-any.whl", b"wheel bytes"),
           KitMember("README.md", b"read me\n")]


def _listed(members: list[KitMember]) -> dict[str, FileInfo]:
    return {m.path: FileInfo(len(m.source), hashlib.sha256(m.source).hexdigest())  # type: ignore[arg-type]
            for m in members}


def _kit(members: list[KitMember] = MEMBERS, mtime: int = 1_700_000_000) -> bytes:
    out = io.BytesIO()
    write_kit(out, TOP, KIT_JSON, members, mtime=mtime)
    return out.getvalue()


def test_the_list_comes_first_and_the_files_extract_with_their_modes(tmp_path: Path) -> None:
    reader = KitReader(io.BytesIO(_kit()))
    assert reader.head() == (TOP, KIT_JSON)
    reader.extract(_listed(MEMBERS), tmp_path)
    assert (tmp_path / "wheels/a-1.0-py3-none-any.whl").read_bytes() == b"wheel bytes"
    assert (tmp_path / "install.sh").stat().st_mode & 0o111
    assert not (tmp_path / "README.md").stat().st_mode & 0o111


def test_writing_is_reproducible_whatever_the_member_order() -> None:
    assert _kit(MEMBERS) == _kit(list(reversed(MEMBERS)))
    with tarfile.open(fileobj=io.BytesIO(_kit())) as tar:
        assert {(m.uid, m.gid, m.uname, m.mtime) for m in tar} == {(0, 0, "", 1_700_000_000)}


def test_checking_without_a_destination_writes_nothing(tmp_path: Path) -> None:
    reader = KitReader(io.BytesIO(_kit()))
    reader.head()
    reader.extract(_listed(MEMBERS), None)
    assert list(tmp_path.iterdir()) == []


def test_an_unlisted_member_a_wrong_digest_or_a_missing_one_is_refused() -> None:
    listed = _listed(MEMBERS)
    cases = [
        ({k: v for k, v in listed.items() if k != "README.md"}, FormatError,
         "'README.md' is not listed"),
        ({**listed, "README.md": FileInfo(8, "0" * 64)}, DigestError, "does not match its sha256"),
        ({**listed, "README.md": FileInfo(9, listed["README.md"].sha256)}, DigestError,
         "is 8 bytes"),
        ({**listed, "extra.txt": FileInfo(1, "0" * 64)}, FormatError, "lacks extra.txt"),
    ]
    for bad, error, words in cases:
        reader = KitReader(io.BytesIO(_kit()))
        reader.head()
        with pytest.raises(error, match=words):
            reader.extract(bad, None)


def _tar(*entries: tuple[str, bytes, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.type, ti.size = kind, len(data)
            if kind == tarfile.SYMTYPE:
                ti.linkname, ti.size = "/etc/passwd", 0
            tar.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return out.getvalue()


@pytest.mark.parametrize(("entries", "words"), [
    ([("kit.json", tarfile.REGTYPE, KIT_JSON)], "must start with its top directory"),
    ([(TOP, tarfile.DIRTYPE, b""), (f"{TOP}/README.md", tarfile.REGTYPE, b"x")],
     "must list its files in"),
    ([(TOP, tarfile.DIRTYPE, b""), (f"{TOP}/../evil", tarfile.REGTYPE, b"x")], "unsafe path"),
    ([(TOP, tarfile.DIRTYPE, b""), (f"{TOP}/kit.json", tarfile.SYMTYPE, b"")],
     "not a file or directory"),
    ([(TOP, tarfile.DIRTYPE, b""), ("other/kit.json", tarfile.REGTYPE, KIT_JSON)],
     "is outside"),
])
def test_a_hostile_layout_is_refused_at_the_head(entries: list[tuple[str, bytes, bytes]],
                                                 words: str) -> None:
    with pytest.raises(FormatError, match=words):
        KitReader(io.BytesIO(_tar(*entries))).head()


def test_a_link_after_the_head_is_refused() -> None:
    data = _tar((TOP, tarfile.DIRTYPE, b""), (f"{TOP}/kit.json", tarfile.REGTYPE, KIT_JSON),
                (f"{TOP}/install.sh", tarfile.SYMTYPE, b""))
    reader = KitReader(io.BytesIO(data))
    reader.head()
    with pytest.raises(FormatError, match="not a file or directory"):
        reader.extract({}, None)


def test_a_truncated_kit_or_no_tar_at_all_is_a_format_error() -> None:
    with pytest.raises(FormatError):
        KitReader(io.BytesIO(b"\0garbage" * 10)).head()
    cut = _kit()[:1536]
    with pytest.raises(FormatError):
        reader = KitReader(io.BytesIO(cut))
        reader.head()
        reader.extract(_listed(MEMBERS), None)
