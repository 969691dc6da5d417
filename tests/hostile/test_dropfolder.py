"""A hostile stick in the drop folder, hostile sample files, a hostile report: nothing escapes.

The drop folder reads only regular files directly in the watched folder
(links, FIFOs and directories named like bundles are never opened), takes
part names from a parts listing as names in that folder only, writes result
lines a terminal shows inertly, and the drift reader skips links among the
samples. Forged and altered reports are in tests/bundler/test_reports.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from agent.layout import Layout
from agent.observe.dropfolder import Drop, DropFolder, DropMemory, Outcome, write_results
from agent.observe.sample_drift import model_drift
from tests.support.device import agent_json, init_device
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec


def _ready(folder: Path, tmp_path: Path) -> list[str]:
    drops = DropFolder([folder], settle_s=0.0, memory=DropMemory(tmp_path / "drops.json"))
    return sorted(c.drop.path.name for c in drops.ready())


def test_only_regular_files_directly_in_the_folder_are_drops(tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    (tmp_path / "outside.airlock").write_bytes(b"x" * 4096)
    os.symlink(tmp_path / "outside.airlock", stick / "link.airlock")
    os.symlink("/dev/zero", stick / "zero.airlock")
    os.mkfifo(stick / "fifo.airlock")  # opening it would block serve forever
    (stick / "dir.airlock").mkdir()
    (stick / "dir.airlock" / "inner.airlock").write_bytes(b"x")
    for name in (".hidden.airlock", "copying.airlock.partial", "copying.airlock.tmp"):
        (stick / name).write_bytes(b"x")
    (stick / "real.airlock").write_bytes(b"not a bundle")
    assert _ready(stick, tmp_path) == ["real.airlock"]


def test_a_parts_listing_cannot_name_files_outside_the_folder(tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    (stick / "x.parts.json").write_text(
        '{"parts": [{"name": "../../etc/passwd", "size": 1}, {"name": "/etc/hosts", "size": 1}]}')
    drop = next(DropFolder([stick], 0.0, DropMemory(tmp_path / "d.json")).scan())
    assert [p.parent for p in drop.files] == [stick] * 3
    assert [p.name for p in drop.files[1:]] == ["passwd", "hosts"]


def test_result_lines_are_inert_on_a_terminal(tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    name = "\x1b]0;owned\x07\x1b[31mred"
    (stick / f"{name}.airlock").write_bytes(b"x")
    drop = Drop(stick, name, "bundle", [stick / f"{name}.airlock"])
    write_results(drop, Outcome("rejected", "bad \x1b[2J release\r\nname\u202e", 3), "cam")
    line = (stick / f"{name}.result.txt").read_text()
    assert line.count("\n") == 1 and line.endswith("\n")
    assert not any(not c.isprintable() for c in line[:-1]), repr(line)


def test_drift_reads_no_links_and_no_half_written_samples(tmp_path: Path, keyset: Keys) -> None:
    ref = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    np.savez(tmp_path / "ref.npz", x=ref)
    spec = write_spec(tmp_path, health={"reference": "ref.npz"})
    root = init_device(tmp_path / "dev", keyset)
    agent_json(root, "install", build(spec, tmp_path / "b.airlock", [keyset.release_key]))
    samples = root / "samples" / "detector"
    samples.mkdir(parents=True)
    np.savez(tmp_path / "elsewhere.npz", x=ref + 5)
    os.symlink(tmp_path / "elsewhere.npz", samples / "link.npz")
    np.savez(samples / ".half.npz", x=ref + 5)
    (samples / "garbage.npz").write_bytes(b"PK\x03\x04 not really")
    time.sleep(0.01)
    np.savez(samples / "ok.npz", x=ref[:100])
    layout = Layout(root)
    release = layout.load_release("vision-1")
    d = model_drift(layout, "vision-1", release.models[0])
    assert d is not None
    assert d["files"] == 1 and d["rows"] == 100 and d["psi"] < 0.2
    assert "1 sample file(s) skipped" in d["note"]
