"""A hostile stick: links, special files and side files that once leaked keys or stopped serve.

Each test is a case of issue 24 (classes 1 to 3) that failed before: a split
part linked to ``ROOT/device.key`` behind a crafted first part printed the
key; a planted ``airlock-reports`` link had serve write as root anywhere;
``kit.json`` linked to ``/dev/zero`` ate the kit verifier's memory; a FIFO
among returned reports hung ``ingest``; a three-byte ``[]`` parts list, a NUL
in a part name or deep nesting stopped ``serve`` with exit 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from agent.observe.dropfolder import DropFolder, DropMemory
from airlock.files import PartialFile, read_on_medium
from airlock.format.parts import PartsWriter
from airlock.limits import MAX_DROPS_PER_SCAN
from tests.support.cli import REPO, run_agent, run_airlock
from tests.support.kit import Kit
from tests.support.serve import Serve


def _device(kit: Kit, root: Path) -> Path:
    p = run_agent("--root", root, "init", "--trust", kit.trust_path, "--device-id", "test-dev")
    assert p.returncode == 0, p.stderr
    return root


def _key_bytes_in(text: str, key: bytes) -> bool:
    """Any line of the key (its base64 body included) in ``text``, escaped or not."""
    lines = [line for line in key.decode().splitlines() if len(line) >= 16]
    flat = text.replace("\\n", "\n")
    return any(line in flat for line in lines)


def _long_name_parts(stick: Path, secret: Path, *, link: bool) -> Path:
    """part001: a GNU long-name header whose name is the next part; part002: ``secret``
    (a link to it, or a copy); part003: padding and one more header, so the name is used."""
    size = secret.stat().st_size
    long = tarfile.TarInfo("././@LongLink")
    long.type, long.size = tarfile.GNUTYPE_LONGNAME, size
    (stick / "x.airlock.part001").write_bytes(long.tobuf(format=tarfile.USTAR_FORMAT))
    if link:
        os.symlink(secret, stick / "x.airlock.part002")
    else:
        (stick / "x.airlock.part002").write_bytes(secret.read_bytes())
    after = tarfile.TarInfo("whatever")
    (stick / "x.airlock.part003").write_bytes(
        b"\0" * (-size % 512) + after.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024)
    return stick / "x.airlock.part001"


def test_a_part_linked_to_the_device_key_is_refused_and_no_output_carries_the_key(
        kit: Kit, tmp_path: Path) -> None:
    root = _device(kit, tmp_path / "dev")
    key = (root / "device.key").read_bytes()
    for link in (True, False):  # a link is never followed; a copy's bytes are never quoted
        stick = tmp_path / f"stick-{link}"
        stick.mkdir()
        first = _long_name_parts(stick, root / "device.key", link=link)
        runs = [run_agent("--root", root, "install", first),
                run_agent("--root", root, "install", first, "--json"),
                run_airlock("verify", first, "--trust", kit.trust_path),
                run_airlock("verify", first, "--trust", kit.trust_path, "--json")]
        for r in runs:
            assert r.returncode == 3, (r.stdout, r.stderr)
            assert not _key_bytes_in(r.stdout + r.stderr, key), r.stderr
        if link:
            assert "symbolic link" in runs[0].stderr
        else:
            assert "a name of" in runs[0].stderr and "sha256" in runs[0].stderr
    journal = (root / "journal.jsonl").read_text() if (root / "journal.jsonl").exists() else ""
    history = run_agent("--root", root, "history", "--json")
    assert not _key_bytes_in(journal + history.stdout, key)


def test_serve_never_writes_its_report_through_a_planted_link(kit: Kit, tmp_path: Path) -> None:
    root = _device(kit, tmp_path / "dev")
    stick, elsewhere = tmp_path / "stick", tmp_path / "elsewhere"
    stick.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, stick / "airlock-reports")
    (stick / "good.airlock").write_bytes(kit.good)
    with Serve.start(root, watch=[stick]) as s:
        done = s.wait_event("drop-result", drop=str(stick / "good.airlock"))
        assert done["outcome"] == "installed", done
        refused = s.wait_event("report-not-written")
        assert "symbolic link" in refused["reason"]
    assert list(elsewhere.iterdir()) == []


def test_a_planted_partial_link_on_the_output_stick_is_not_written_through(
        tmp_path: Path) -> None:
    out = tmp_path / "stick"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    os.symlink(victim, out / ".v.airlock.part002.partial")
    writer = PartsWriter(out / "v.airlock", max_size=1000)
    writer.write(os.urandom(2500))
    done = writer.publish()
    assert victim.read_bytes() == b"untouched"
    assert [p.path.name for p in done.parts] == [f"v.airlock.part00{n}" for n in (1, 2, 3)]
    assert not (out / "v.airlock.part002").is_symlink()
    assert (out / "v.airlock.part002").stat().st_size == 1000


def test_a_partial_file_never_writes_through_a_link_at_its_name(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    os.symlink(victim, tmp_path / ".t.partial")
    with PartialFile(tmp_path / "t", name=".t.partial") as p:
        p.file.write(b"ours")
        p.publish()
    assert victim.read_bytes() == b"untouched" and (tmp_path / "t").read_bytes() == b"ours"


def _verify_kit(kit_dir: Path, trust: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", str(REPO / "keys" / "kitverify.py"),
                           str(kit_dir), "--trust", str(trust)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_kit_verifier_reads_no_link_and_no_fifo_as_kit_json(kit: Kit, tmp_path: Path) -> None:
    for name, plant in (("zero", lambda p: os.symlink("/dev/zero", p)), ("fifo", os.mkfifo)):
        kit_dir = tmp_path / name
        kit_dir.mkdir()
        plant(kit_dir / "kit.json")
        r = _verify_kit(kit_dir, kit.trust_path)  # /dev/zero read whole took all memory
        assert r.returncode == 3, (r.returncode, r.stderr)
        assert "kit.json" in r.stderr


def test_ingest_is_not_held_by_a_fifo_or_a_link_among_returned_reports(tmp_path: Path) -> None:
    reports = tmp_path / "airlock-reports"
    reports.mkdir()
    os.mkfifo(reports / "a.report.json")  # opening it blocked ingest for ever
    os.symlink("/dev/zero", reports / "b.report.json")
    r = run_airlock("report", "ingest", reports, "--fleet", tmp_path / "hq", timeout=60)
    assert r.returncode == 3, r.stderr
    assert "a.report.json is a FIFO" in r.stderr and "b.report.json is a symbolic link" in r.stderr


def test_a_stick_of_many_files_is_scanned_to_a_bound_and_each_drop_stays_remembered(
        tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    for n in range(MAX_DROPS_PER_SCAN + 50):
        (stick / f"junk-{n:04d}.airlock").write_bytes(b"not a bundle")
    folder = DropFolder([stick], 0.0, DropMemory(tmp_path / "drops.json"))
    drops = list(folder.scan())
    assert len(drops) == MAX_DROPS_PER_SCAN and folder.overflow == {str(stick)}


def test_side_files_are_read_bounded_as_regular_files_only(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 100)
    os.symlink(tmp_path / "big", tmp_path / "link")
    for name, why in (("big", "more than 10"), ("link", "symbolic link")):
        try:
            read_on_medium(tmp_path, name, 10)
        except ValueError as e:
            assert why in str(e)
        else:
            raise AssertionError(f"{name} was read")


def test_serve_survives_a_stick_of_hostile_side_files_and_installs_the_good_bundle(
        kit: Kit, tmp_path: Path) -> None:
    root = _device(kit, tmp_path / "dev")
    stick = tmp_path / "stick"
    stick.mkdir()
    (stick / "empty.parts.json").write_bytes(b"[]")  # stopped serve with exit 1
    (stick / "nul.parts.json").write_text(json.dumps(
        {"bundle": "nul.airlock", "parts": [{"name": "nul.airlock.part\u0000001", "size": 1}]}))
    (stick / "deep.parts.json").write_text("[" * 100_000 + "]" * 100_000)
    with open(stick / "sparse.parts.json", "wb") as f:  # read whole: 342 MiB at its peak
        f.truncate(300 * 1024 * 1024)
    (stick / "odd.parts.json").write_text(json.dumps({"parts": [1, None, {"name": 5}]}))
    os.symlink(Path(root) / "device.key", stick / "key.airlock.parts.json")
    (stick / "good.airlock").write_bytes(kit.good)
    with Serve.start(root, watch=[stick]) as s:
        done = s.wait_event("drop-result", drop=str(stick / "good.airlock"))
        assert done["outcome"] == "installed", done
        for name in ("empty", "nul", "deep", "sparse", "odd"):
            got = s.wait_event("drop-result", drop=str(stick / f"{name}.parts.json"))
            assert got["outcome"] in ("rejected", "incomplete"), got  # said, never a crash
        assert s.proc.poll() is None
        assert s.get("/healthz")
        time.sleep(2)  # ten more polls: nothing is tried again
    errors = [e for e in s.events() if e["event"] in ("error", "drop-result")]
    per_drop: dict[str, int] = {}
    for e in errors:
        per_drop[str(e.get("drop"))] = per_drop.get(str(e.get("drop")), 0) + 1
    assert max(per_drop.values()) == 1, per_drop  # each one logged once, never in a loop
    assert s.proc.returncode == 0
