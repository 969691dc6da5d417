"""Text from unsigned media is inert: no control sequence reaches a terminal, nothing breaks the journal.

A bundle names things: tar members, a release name and version, key ids, and
its own file name on the stick. All of it is shown to a person (``verify``,
``inspect``, ``install`` errors, ``status``, ``history``) and much of it is
journaled. For every ``TXT-inert`` case of the corpus and a few inputs that
are not bundles (a file name that is not UTF-8, a validly signed version full
of escapes, a journal line written by an older agent), these tests run the
real command lines and check what a terminal would receive:

* no control byte (ESC and the rest of C0 but newline, DEL, C1, bidi
  overrides) and strictly valid UTF-8;
* the one error line at most ``MAX_MESSAGE_CHARS`` (plus the elision note);
* after any of it, ``status``, ``history`` and ``history --verify`` exit 0,
  and every journal line is ASCII JSON with no lone surrogate.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.journal import Journal
from airlock.console import inert
from airlock.limits import MAX_JOURNAL_TEXT_CHARS, MAX_MESSAGE_CHARS
from tests.hostile.cases import CASES, HOSTILE_TEXT, Case
from tests.support.cli import run_agent, run_tool
from tests.support.device import kit_device
from tests.support.kit import ACTIVE_SEQUENCE, Kit
from tests.support.tarsurgery import bundle, sign_dict

TEXT_CASES = [c for c in CASES if c.threat == "TXT-inert"]

# What must never reach a terminal, as UTF-8 bytes: C0 controls but newline, DEL,
# C1 controls (U+0080..U+009F) and the bidi embeddings, overrides and isolates.
_CONTROL = re.compile(
    rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xaa-\xae]|\xe2\x81[\xa6-\xa9]"
)
# An error line: the prefix, the bounded message and the note saying what was cut.
_MAX_ERROR_LINE = MAX_MESSAGE_CHARS + 100


def _tool(module: str, *args: Any, **kw: Any) -> tuple[int, bytes, bytes]:
    """Run a tool with byte output, as a terminal receives it."""
    r = run_tool(module, *args, input=b"", **kw)
    return r.returncode, bytes(r.stdout), bytes(r.stderr)


def _assert_inert(out: bytes, what: str) -> str:
    found = _CONTROL.search(out)
    assert found is None, f"{what}: control bytes {found.group()!r} reach the terminal"
    return out.decode("utf-8")  # strict: undecodable bytes would raise here


def _assert_one_error_line(err: bytes, prog: str) -> str:
    text = _assert_inert(err, "stderr")
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), text
    assert len(lines[0]) <= _MAX_ERROR_LINE, len(lines[0])
    return lines[0]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _journal_is_clean(root: Path) -> int:
    """Every journal line is ASCII JSON whose every string is printable (so valid UTF-8:
    no control character, no lone surrogate); the chain holds."""
    raw = (root / "journal.jsonl").read_bytes()
    raw.decode("ascii")
    for line in raw.splitlines():
        for text in _strings(json.loads(line)):
            assert text.isprintable(), (text[:200], line[:300])
            text.encode("utf-8")
    return Journal(root / "journal.jsonl").verify()


def _device_answers(root: Path) -> None:
    """status, history and history --verify still work and print nothing dangerous."""
    for args in (["status"], ["history"], ["history", "--verify"], ["status", "--json"],
                 ["history", "--json"]):
        code, out, err = _tool("agent", "--root", root, *args)
        assert code == 0, (args, err)
        _assert_inert(out + err, " ".join(args))
    _journal_is_clean(root)


@pytest.fixture(scope="module")
def device(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield kit_device(kit, tmp_path_factory.mktemp("inert-device"))


# -- the host: verify and inspect ------------------------------------------------


@pytest.mark.parametrize("case", TEXT_CASES, ids=[c.id for c in TEXT_CASES])
def test_verify_and_inspect_print_nothing_a_terminal_obeys(
    case: Case, kit: Kit, tmp_path: Path
) -> None:
    path = case.write(kit, tmp_path)
    code, out, err = _tool("bundler", "verify", path, "--trust", kit.trust_path)
    assert code == case.exit
    assert case.error in _assert_one_error_line(err, "airlock")
    assert out == b""

    # inspect reads only the (unverified) metadata: it may show it, but inertly; JSON
    # keeps the data whole (escaped by JSON), human text is bounded too.
    for extra in ([], ["--json"]):
        code, out, err = _tool("bundler", "inspect", path, *extra)
        assert code in (0, 3), err
        if code == 3:
            _assert_one_error_line(err, "airlock")
        text = _assert_inert(out, "inspect stdout")
        if not extra:
            assert all(len(line) <= 4 * _MAX_ERROR_LINE for line in text.splitlines())


def test_inspect_refuses_an_escape_naming_it_as_text(kit: Kit, tmp_path: Path) -> None:
    # Signed text may carry no control character (keys.signed_fields), so inspect refuses
    # the metadata; the refusal names the character instead of sending it.
    case = next(c for c in TEXT_CASES if c.id == "text-esc-in-unsigned-metadata")
    code, out, err = _tool("bundler", "inspect", case.write(kit, tmp_path))
    assert code == 3 and out == b""
    assert b"\x1b" not in err and b"\x9b" not in err
    line = _assert_one_error_line(err, "airlock")
    assert "control character (U+001B)" in line and "airlock.version" in line


# -- the device: install refusals, then status and history ------------------------


@pytest.mark.parametrize("case", TEXT_CASES, ids=[c.id for c in TEXT_CASES])
def test_install_refusal_is_inert_and_the_journal_stays_readable(
    case: Case, kit: Kit, device: Path, tmp_path: Path
) -> None:
    path = case.write(kit, tmp_path)
    code, out, err = _tool("agent", "--root", device, "install", path)
    assert code == case.exit
    assert case.error in _assert_one_error_line(err, "airlock-agent")
    _assert_inert(out, "install stdout")
    _device_answers(device)
    last = list(Journal(device / "journal.jsonl").entries())[-1]
    assert last["event"] == "rejected"


def test_a_bundle_file_name_that_is_not_utf8(kit: Kit, device: Path, tmp_path: Path) -> None:
    # The stick's file system hands over raw bytes: not UTF-8, with an escape sequence.
    media = os.fsencode(tmp_path) + b"/\xff\xfe" + HOSTILE_TEXT.encode() + b".airlock"
    bad = next(c for c in TEXT_CASES if c.id == "text-esc-in-member-name")
    with open(media, "wb") as f:
        f.write(bad.make(kit))
    code, out, err = _tool("agent", "--root", device, "install", os.fsdecode(media))
    assert code == 3
    line = _assert_one_error_line(err, "airlock-agent")
    assert "not listed in the signed metadata" in line
    _device_answers(device)
    last = list(Journal(device / "journal.jsonl").entries())[-1]
    assert last["bundle"].endswith("/\\xff\\xfe\\x1b[2J\\x1b]0;pwned\\x07\\x1b[31m\\u202e\\x9b.airlock")

    code, out, _ = _tool("agent", "--root", device, "history", "--last", "1")
    assert code == 0 and b"\\xff\\xfe\\x1b[2J" in out


def test_a_signed_version_full_of_escapes(kit: Kit, device: Path, tmp_path: Path) -> None:
    # The release key signs a version string no one should print raw. Whether the device
    # takes it or not, what it shows and journals is inert.
    s = kit.signed()
    s["version"] = ACTIVE_SEQUENCE + 10
    s["airlock"]["version"] = "2.0" + HOSTILE_TEXT + "w" * 5000
    path = tmp_path / "escapes.airlock"
    path.write_bytes(bundle(sign_dict(s, [kit.release]), kit.files))
    code, out, err = _tool("agent", "--root", device, "install", path)
    assert code in (0, 3), err
    _assert_inert(out + err, "install")
    if code == 3:
        _assert_one_error_line(err, "airlock-agent")
    _device_answers(device)
    code, out, _ = _tool("agent", "--root", device, "status")
    assert all(len(line) <= 4 * _MAX_ERROR_LINE for line in out.decode().splitlines())


def test_old_journal_lines_do_not_stop_status_or_history(kit: Kit, tmp_path: Path) -> None:
    root = tmp_path / "root"
    r = run_agent("--root", root, "init", "--trust", kit.trust_path)
    assert r.returncode == 0, r.stderr
    # A line an older agent wrote: a lone surrogate and raw escapes, JSON-escaped, chained.
    journal = root / "journal.jsonl"
    last = journal.read_bytes().splitlines()[-1]
    old = {"time": "2020-01-01T00:00:00.000Z", "event": "rejected",
           "bundle": "/media/\udcff\x1b[2J.airlock", "reason": "bundle member '\udcfe' \u202e",
           "prev": hashlib.sha256(last).hexdigest()}
    with journal.open("ab") as f:
        f.write(json.dumps(old, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    for args in (["status"], ["history"], ["history", "--verify"], ["history", "--json"]):
        code, out, err = _tool("agent", "--root", root, *args)
        assert code == 0, (args, err)
        _assert_inert(out + err, " ".join(args))
    code, out, _ = _tool("agent", "--root", root, "history", "--last", "1", "--json")
    assert json.loads(out)["entries"][0]["bundle"] == "/media/\\xff\\x1b[2J.airlock"

    # New lines chain on to it.
    garbage = tmp_path / "garbage.airlock"
    garbage.write_bytes(b"\x1b[2J" * 1000)
    code, _, err = _tool("agent", "--root", root, "install", garbage)
    assert code == 3
    _assert_one_error_line(err, "airlock-agent")
    assert Journal(journal).verify() == 3  # initialised, the old line, this refusal


def test_a_line_that_is_not_an_entry_is_shown_as_unreadable(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append("initialised", device_id="cam-1")
    with journal.path.open("ab") as f:
        f.write(b'["not", "an", "entry"]\n\xff\x1b[2J\n{"event": 5}\n')
    entries = list(journal.entries())
    assert [e["event"] for e in entries] == ["initialised", "unreadable", "unreadable", "unreadable"]
    assert entries[2]["raw"] == "\\xff\\x1b[2J"


def test_journal_strings_are_bounded(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    entry = journal.append("rejected", bundle="b" * 10 * MAX_JOURNAL_TEXT_CHARS,
                           reason=["\udcff" * 10] * 3)
    line = journal.path.read_bytes()
    assert len(line) < MAX_JOURNAL_TEXT_CHARS + 1000
    assert "characters left out" in entry["bundle"]
    assert entry["reason"] == ["\\xff" * 10] * 3
    assert journal.verify() == 1


# -- the one function every output goes through ------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=3 * MAX_MESSAGE_CHARS))
def test_inert_text_is_printable_encodable_and_bounded(text: str) -> None:
    shown = inert(text)
    assert shown.isprintable()
    assert _CONTROL.search(shown.encode("utf-8")) is None
    assert len(shown) <= MAX_MESSAGE_CHARS + 60
    if text.isprintable() and len(text) <= MAX_MESSAGE_CHARS:
        assert shown == text  # ordinary text, accents and all, is left alone
