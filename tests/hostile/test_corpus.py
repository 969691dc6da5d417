"""Every bad bundle of the corpus is refused cleanly by ``airlock verify``.

For each case: the documented exit code, one line on stderr naming the
problem, no traceback, and nothing written anywhere (the tree of the test's
directory, which holds the bundle, the working directory, HOME and TMPDIR, is
hashed before and after). The same case is also run in-process over a pipe
(tarfile's stream mode), since the CLI reads files (seekable mode).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from airlock.errors import AirlockError
from bundler.examine.verify import verify_bundle
from keys.trust import TrustRoot
from tests.hostile.cases import CASES, THREATS, Case
from tests.support.cli import run_airlock
from tests.support.kit import Kit
from tests.support.treehash import listing


class _Pipe(io.RawIOBase):
    """A non-seekable stream, like stdin from a USB reader."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        return self._f.readinto(b)


def test_corpus_covers_every_threat_row(repo: Path) -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    covered = {c.threat for c in CASES}
    assert covered == set(THREATS), f"rows without a case: {set(THREATS) - covered}"
    doc = (repo / "docs" / "THREAT_MODEL.md").read_text()
    for row in THREATS:
        assert f"`{row}`" in doc, f"{row} is not in docs/THREAT_MODEL.md"
    for c in CASES:
        assert f"`{c.id}`" in doc, f"case {c.id} is not listed in docs/THREAT_MODEL.md"


def test_good_bundle_passes(kit: Kit, tmp_path: Path) -> None:
    good = tmp_path / "good.airlock"
    good.write_bytes(kit.good)
    r = run_airlock("verify", good, "--trust", kit.trust_path)
    assert r.returncode == 0, r.stderr
    verify_bundle(_Pipe(kit.good), TrustRoot.from_bytes(kit.trust_path.read_bytes()))  # type: ignore[arg-type]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_verify_refuses(case: Case, kit: Kit, tmp_path: Path) -> None:
    bundle = case.write(kit, tmp_path / "media")
    work, home, tmp = tmp_path / "work", tmp_path / "home", tmp_path / "tmp"
    for d in (work, home, tmp):
        d.mkdir()
    before = listing(tmp_path)
    args = ["verify", bundle, "--trust", kit.trust_path]
    if case.ring:
        args += ["--ring", case.ring]
    r = run_airlock(*args, cwd=work, env={"HOME": str(home), "TMPDIR": str(tmp)})
    assert listing(tmp_path) == before, "verify wrote something"
    assert "Traceback" not in r.stderr
    if case.device_seen is not None:
        # The host keeps no history: only a device can see a rollback (checked below).
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == case.exit, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("airlock: error: "), r.stderr
        assert case.error in lines[0]
        assert r.stdout == ""

    # In-process over a pipe: stream mode, and the device's anti-rollback check.
    trust = TrustRoot.from_bytes(kit.trust_path.read_bytes())
    with pytest.raises(AirlockError) as e:
        verified = verify_bundle(_Pipe(bundle.read_bytes()), trust, ring=case.ring)  # type: ignore[arg-type]
        trust.check_sequence(verified.release, case.device_seen)
    assert e.value.exit_code == case.exit
    assert case.error in str(e.value)
