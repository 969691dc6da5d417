"""Everything read before the signature check is bounded in CPU, memory and bytes.

Issue 13, class 3. The corpus (cases ``parse-*`` in tests/hostile/cases/parsing.py)
shows each hostile input refused with exit 3, journaled, the device
unchanged; this module measures what refusing them costs:

* the worst pax header tarfile still parses (a run of digits, quadratic on
  Python < 3.11.10, CVE-2024-6232) costs milliseconds of CPU at
  ``MAX_EXTENDED_HEADER_BYTES``;
* ``airlock-agent install`` of the heaviest metadata within
  ``MAX_METADATA_BYTES`` and ``MAX_METADATA_VALUES`` (and of the review's
  32 MiB release.json) peaks far below 200 MiB, measured by ``wait4``;
* a reader that runs out of stack says FormatError, never RecursionError;
* the bundler refuses to sign metadata a device would refuse (exit 2).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from agent.journal import Journal
from airlock.errors import FormatError
from airlock.format.bundle import BundleHead, BundleReader
from airlock.limits import MAX_EXTENDED_HEADER_BYTES, MAX_METADATA_BYTES, MAX_METADATA_VALUES
from keys.metadata import check_metadata_bounds
from tests.hostile.cases import CASES
from tests.support.cli import run_agent, run_airlock, tool_env
from tests.support.keyset import Keys
from tests.support.kit import Kit
from tests.support.spec import write_spec
from tests.support.tarsurgery import bundle, member, tarinfo
from tests.support.treehash import listing

# Generous: the agent idles at ~40 MiB; the 32 MiB input used to cost ~900 MiB.
PEAK_RSS_MIB = 200


def _pax(records: bytes, type: bytes = tarfile.XHDTYPE) -> bytes:
    return member(tarinfo("././@PaxHeader", len(records), type), records)


def _pipe(data: bytes) -> IO[bytes]:
    """A non-seekable stream of ``data``, as from stdin: tarfile's stream mode."""
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return os.fdopen(r, "rb")


# -- CPU: the pax parser -----------------------------------------------------------------------


@pytest.mark.parametrize("pipe", [False, True], ids=["file", "pipe"])
def test_worst_pax_header_within_the_cap_costs_milliseconds(kit: Kit, pipe: bool) -> None:
    # A run of digits: tarfile's hdrcharset search is quadratic on it (6 s at 64 KiB on
    # 3.11.7); at the cap it is a few tens of milliseconds, and linear on fixed Pythons.
    data = _pax(b"1" * MAX_EXTENDED_HEADER_BYTES) + bundle(kit.release_json, kit.files)
    stream = _pipe(data) if pipe else io.BytesIO(data)
    start = time.process_time()
    head = BundleReader(stream).head()
    spent = time.process_time() - start
    assert head.release_json == kit.release_json
    assert spent < 0.5, f"{spent:.2f} s of CPU for one {MAX_EXTENDED_HEADER_BYTES}-byte header"


def test_pax_header_over_the_cap_is_refused_unparsed(kit: Kit) -> None:
    data = _pax(b"1" * (64 * 1024)) + bundle(kit.release_json, kit.files)
    start = time.process_time()
    with pytest.raises(FormatError, match="65536-byte extended tar header"):
        BundleReader(io.BytesIO(data)).head()
    assert time.process_time() - start < 0.1


# -- the stack: RecursionError is a bad bundle, not a crash -----------------------------------


def _read_head(data: bytes) -> BundleHead | Exception:
    try:
        return BundleReader(io.BytesIO(data)).head()
    except (FormatError, RecursionError) as e:
        return e


def test_reader_out_of_stack_says_format_error(kit: Kit) -> None:
    # Two extended headers in a row are allowed but make tarfile recurse deeper than a
    # plain bundle does. Under the smallest stack that reads the plain bundle, the reader
    # must still answer FormatError (exit 3, journaled), never let RecursionError out.
    plain = bundle(kit.release_json, kit.files)
    deeper = _pax(b"12 uid=1000\n", tarfile.XGLTYPE) + _pax(b"12 gid=1000\n") + plain
    assert isinstance(_read_head(deeper), BundleHead)  # fine with a normal stack
    saved = sys.getrecursionlimit()
    depth = _depth()
    try:
        for limit in range(depth, depth + 400):
            try:
                sys.setrecursionlimit(limit)
            except RecursionError:  # below what this stack already uses
                continue
            if isinstance(_read_head(plain), BundleHead):
                break
        else:
            pytest.fail("the plain bundle never read")
        outcome = _read_head(deeper)
    finally:
        sys.setrecursionlimit(saved)
    assert isinstance(outcome, FormatError), repr(outcome)


def _depth() -> int:
    """Frames on the stack now."""
    n, f = 0, sys._getframe()
    while f is not None:
        n, f = n + 1, f.f_back
    return n


# -- memory: the agent on the heaviest metadata within the bounds ------------------------------


def _heaviest_metadata() -> bytes:
    """Unsigned release metadata at both bounds: all the ``{}`` the value count allows, then
    one string up to the byte bound. ``{}`` is the most Python memory per counted value."""
    head = (b'{"signatures":[],"signed":{"_type":"targets","spec_version":"1.0.31",'
            b'"version":1,"expires":"2030-01-01T00:00:00Z","targets":{},"x":[')
    middle, end = b'],"y":"', b'"}}'
    used = 1 + sum((head + middle + end).count(c) for c in b"[{,:")
    dicts = (MAX_METADATA_VALUES - used + 1) // 2  # each "{}," counts twice, the last once
    body = (b"{}," * dicts)[:-1]
    pad = MAX_METADATA_BYTES - len(head + body + middle + end)
    data = head + body + middle + b"A" * pad + end
    check_metadata_bounds(data, "the heaviest metadata")  # at the bounds, not over them
    assert len(data) == MAX_METADATA_BYTES
    assert 1 + sum(data.count(c) for c in b"[{,:") >= MAX_METADATA_VALUES - 1
    return data


# wait4's peak RSS of a child counts the parent's at fork time (Linux keeps the
# high-water mark across exec), so a small parent runs the agent and reports it.
_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _install_measured(root: Path, media: Path) -> tuple[int, str, float, float]:
    """``airlock-agent install``: exit code, stderr, peak RSS (MiB), CPU seconds."""
    r = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "agent",
                        "--root", str(root), "install", str(media)],
                       capture_output=True, text=True, env=tool_env(), timeout=300)
    stderr, _, figures = r.stderr.rstrip("\n").rpartition("\n")
    peak_kib, cpu_s = figures.split()
    return r.returncode, stderr, int(peak_kib) / 1024, float(cpu_s)


@pytest.fixture(scope="module")
def device(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bounded-device") / "root"
    r = run_agent("--root", root, "init", "--trust", kit.trust_path, "--device-id", "cam")
    assert r.returncode == 0, r.stderr
    return root


def _worst_headers() -> bytes:
    """A pax global and a pax local header, each the costliest tarfile still parses."""
    return (_pax(b"1" * MAX_EXTENDED_HEADER_BYTES, tarfile.XGLTYPE)
            + _pax(b"1" * MAX_EXTENDED_HEADER_BYTES))


def _heaviest_release(kit: Kit) -> bytes:
    # The trust root the device holds, carried again, is accepted as it is, so the
    # heaviest release metadata is parsed after it.
    return _worst_headers() + bundle(_heaviest_metadata(), kit.files,
                                     root_json=kit.trust_path.read_bytes())


def _heaviest_root(kit: Kit) -> bytes:
    return _worst_headers() + bundle(kit.release_json, kit.files, root_json=_heaviest_metadata())


_REVIEW = next(c for c in CASES if c.id == "parse-release-json-32mib")

# Bundles whose unsigned front is as costly as the bounds allow, and the refusal each gets.
_HEAVY: dict[str, tuple[Callable[[Kit], bytes], str]] = {
    "heaviest-release": (_heaviest_release, "0 of 1 signatures"),
    "heaviest-root": (_heaviest_root, "trust root is not of type 'root'"),
    "review-32mib-release": (_REVIEW.make, _REVIEW.error),
}


@pytest.mark.parametrize("name", list(_HEAVY))
def test_agent_refuses_heaviest_unsigned_front_in_bounded_memory(
        kit: Kit, device: Path, tmp_path: Path, name: str) -> None:
    make, error = _HEAVY[name]
    media = tmp_path / f"{name}.airlock"
    media.write_bytes(make(kit))
    skip = {"journal.jsonl", "staging"}
    journal = Journal(device / "journal.jsonl")
    lines, before = journal.verify(), listing(device, skip=skip)

    code, stderr, peak_mib, cpu_s = _install_measured(device, media)

    assert code == 3, stderr
    assert len(stderr.strip().splitlines()) == 1 and error in stderr, stderr
    assert peak_mib < PEAK_RSS_MIB, f"agent peaked at {peak_mib:.0f} MiB"
    assert cpu_s < 20, f"agent spent {cpu_s:.1f} s of CPU"
    assert listing(device, skip=skip) == before
    assert journal.verify() == lines + 1
    assert list(journal.entries())[-1]["event"] == "rejected"


# -- the bundler signs nothing a device would refuse --------------------------------------------


def test_build_refuses_metadata_over_the_device_bounds(keyset: Keys, tmp_path: Path) -> None:
    # Commas inside strings count too (the bound is counted before parsing): a flag of
    # MAX_METADATA_VALUES commas is what a device would refuse, so the bundler refuses it.
    spec = write_spec(tmp_path, extra={"flags": {"note": "," * MAX_METADATA_VALUES}})
    out = tmp_path / "too-big.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out)
    assert r.returncode == 2, r.stderr
    assert f"at most {MAX_METADATA_VALUES} are allowed" in r.stderr
    assert "devices would refuse it" in r.stderr
    assert not out.exists()
