"""README.md's "A short tour", run line by line as a new operator types it.

The block's lines run in one bash (``set -eo pipefail``), in a fresh
directory named ``vision`` (the tour's ``airlock new .`` writes ``airlock.yaml``
there) holding the later specs the tour names (``next.yaml`` and
``late.yaml``, later versions and sequences). Two things a test cannot
do are stood in for, and only those: ``pip install`` lines are skipped
(``airlock`` and ``airlock-agent`` on ``PATH`` already run this checkout), and
``/media/usb`` is a directory of the test, as is the device's ROOT
(``$AIRLOCK_ROOT``, which the tour names). Every other line must succeed as
written, so the README cannot drift from what the tools do.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.bundler.test_keys_doc import _tools
from tests.support.cli import REPO, tool_env
from tests.support.spec import write_spec

SECTION = "## A short tour"


def tour_lines() -> list[str]:
    """The command lines of the tour's sh block (continuations joined, comments kept)."""
    text = (REPO / "README.md").read_text()
    block = text[text.index(SECTION):]
    block = block[block.index("```sh\n") + 6:]
    block = block[:block.index("```\n")]
    lines: list[str] = []
    for line in block.splitlines():
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + line.strip()
        elif line.strip():
            lines.append(line)
    return lines


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    lines = tour_lines()
    assert any(line.startswith("airlock build next.yaml") and "--passphrase-env" in line
               for line in lines)
    assert not any("pip install 'airlock-edge" in line for line in lines)
    # The tour starts with `airlock new .`, which names the release after its directory.
    work, usb, root = tmp_path / "vision", tmp_path / "usb", tmp_path / "device"
    work.mkdir()
    usb.mkdir()
    write_spec(work, version="1.3.0", sequence=2, scale=3.0, file_name="next.yaml")
    write_spec(work, version="1.4.0", sequence=3, scale=4.0, file_name="late.yaml")
    script = ["set -eo pipefail",
              "trap 'echo \"README line failed: $BASH_COMMAND\" >&2' ERR"]
    script += [line.replace("/media/usb", str(usb)) for line in lines
               if not line.lstrip().startswith("pip install")]
    (tmp_path / "tour.sh").write_text("\n".join(script) + "\n")
    env = tool_env({"PATH": f"{_tools(tmp_path)}{os.pathsep}{os.environ.get('PATH', '')}",
                    "AIRLOCK_ROOT": str(root)})
    r = subprocess.run(["bash", str(tmp_path / "tour.sh")], cwd=work, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (usb / "vision-1.3.0.airlock.part001").is_file()
    assert (root / "trust" / "root.json").is_file()
