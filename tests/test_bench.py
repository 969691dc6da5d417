"""`scripts/bench.py --quick`: the smoke run that proves every row of issue 14's table prints.

It never judges a timing (the machine is shared and the sizes are tiny): it
checks that each section ran its real commands against its real peers and
printed its rows, so the record run (`--size 1G --write-docs`) cannot die
half-way on a renamed flag or a missing peer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from scripts import bench
from tests.support.cli import REPO
from tests.support.registry import need_tools

pytestmark = pytest.mark.integration

# A phrase of each row of the table, and of each peer beside it.
ROWS = {
    "build": ["hashlib sha256 of the", "`tar cf` of the model", "`cp` of the model",
              "`mender-artifact write", "**build** from local files",
              "`mender-artifact validate`", "`rauc info`", "**verify**: `airlock verify`",
              "**verify**, 4 blobs", "**peak RSS** of `airlock build`",
              "**peak RSS** of `airlock verify`"],
    "install": ["`airlock-agent install`, CLI wall", "**install** without the health check",
                "**peak RSS** of `airlock-agent install`", "**rollback** of a 1 MiB release",
                "**encrypted install** without the health check", "…each further recipient"],
    "health": ["bare ONNX Runtime", "**health check** of", "`airlock check` of"],
    "registry": ["`skopeo copy`", "`curl` of the same blobs", "**registry build, cold**",
                 "**registry build, warm cache**", "local model of the same size"],
    "profile": ["profile of `airlock build", "profile of `airlock verify`",
                "profile of `airlock-agent install`", "…imports (start-up)"],
}


def test_quick_run_prints_every_row_beside_its_peer() -> None:
    need_tools("docker-registry", "skopeo")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--quick"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and line.endswith(" |")]
    assert rows[0] == bench.HEADER.splitlines()[0]
    for section, phrases in ROWS.items():
        mine = [row for row in rows if row.startswith(f"| {section} |")]
        for phrase in phrases:
            assert any(phrase in row for row in mine), f"{section}: no row with {phrase!r}"
    cells = [re.split(r"(?<!\\)\|", row)[1:-1] for row in rows]
    assert all(len(c) == 6 for c in cells), "a row lost a column"
    if os.environ.get("CI") == "true":
        # CI installs every peer (scripts/test.sh): none may be missing from the table.
        assert not [row for row in rows if "n/a" in row], r.stdout


def test_sizes_read_like_dd() -> None:
    assert bench.parse_size("1G") == 1 << 30
    assert bench.parse_size("256M") == 256 << 20
    assert bench.parse_size("64MiB") == 64 << 20
    assert bench.parse_size("4096") == 4096
    with pytest.raises(Exception, match="not a size"):
        bench.parse_size("lots")
