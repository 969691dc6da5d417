"""docs/KEYS.md, run: each walkthrough's commands, line by line, as the release team types them.

Every ``## `` section that holds ```` ```sh ```` blocks is one test, run by
bash in a fresh directory holding the release specs the page names
(``airlock.yaml``; ``next.yaml`` and ``late.yaml``, later versions and
sequences). ``airlock`` and ``airlock-agent`` on ``PATH`` run this checkout.
A line ``CMD   # exit N: TEXT`` must exit N with TEXT on stderr; any other
line must succeed. Standard input is a terminal whose person answers "y" to
every question, as the people in the walkthroughs do after reading what
they sign. So the page cannot drift from what the tools do.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import REPO, tool_env
from tests.support.softhsm import need_commands
from tests.support.spec import write_spec
from tests.support.terminal import answering

DOC = REPO / "docs" / "KEYS.md"
EXPECT = re.compile(r"^(?P<cmd>.*?)\s+# exit (?P<code>\d+): (?P<text>.+)$")


def _sections() -> dict[str, list[str]]:
    """Heading -> the command lines of its sh blocks (continuations joined)."""
    found: dict[str, list[str]] = {}
    heading, in_sh = "", False
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        elif line.startswith("```"):
            in_sh = not in_sh and line.strip() == "```sh"
        elif in_sh and line.strip():
            lines = found.setdefault(heading, [])
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + line.strip()
            else:
                lines.append(line)
    return found


SECTIONS = _sections()


def _script(lines: list[str]) -> str:
    out = ["set -eo pipefail", "trap 'echo \"KEYS.md line failed: $BASH_COMMAND\" >&2' ERR"]
    for line in lines:
        m = EXPECT.match(line)
        if m is None:
            out.append(line)
            continue
        cmd, code, text = m["cmd"], m["code"], m["text"]
        said = f"{shlex.quote(cmd)}"
        out += [
            "trap - ERR",
            f"rc=0; ( {cmd} ) 2>.doc-stderr || rc=$?",
            "cat .doc-stderr >&2",
            f'[ "$rc" -eq {code} ] || {{ echo "exit $rc, not {code}: "{said} >&2; exit 1; }}',
            f"want={shlex.quote(text)}",
            f'grep -qF -- "$want" .doc-stderr || {{ echo "no \'$want\' from: "{said} >&2; exit 1; }}',
            "trap 'echo \"KEYS.md line failed: $BASH_COMMAND\" >&2' ERR",
        ]
    return "\n".join(out) + "\n"


def _tools(directory: Path) -> Path:
    """``airlock`` and ``airlock-agent`` as commands that run this checkout."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    for name, module in (("airlock", "bundler"), ("airlock-agent", "agent")):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m {module} "$@"\n')
        tool.chmod(0o755)
    return bin_dir


def test_every_walkthrough_is_found() -> None:
    assert set(SECTIONS) >= {
        "A release key in an HSM",
        "A two-person release: CI signs first, a person second",
        "Signatures by mail: detached signatures",
        "A root ceremony: root keys on two offline machines",
    }, sorted(SECTIONS)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_walkthrough_runs_as_written(section: str, tmp_path: Path) -> None:
    lines = SECTIONS[section]
    words = {w for line in lines for w in re.findall(r"[\w.-]+", line)}
    need_commands(*sorted(words & {"softhsm2-util", "pkcs11-tool", "openssl", "faketime"}))
    work = tmp_path / "team"
    work.mkdir()
    write_spec(work, version="1.2.0", sequence=1, file_name="airlock.yaml")
    write_spec(work, version="1.3.0", sequence=2, scale=3.0, file_name="next.yaml")
    write_spec(work, version="1.4.0", sequence=3, scale=4.0, file_name="late.yaml")
    script = tmp_path / "walkthrough.sh"
    script.write_text(_script(lines))
    env = tool_env({"PATH": f"{_tools(tmp_path)}{os.pathsep}{os.environ.get('PATH', '')}"})
    env.pop("AIRLOCK_ROOT", None)
    with answering(b"y\n" * 64) as terminal:
        r = subprocess.run(["bash", str(script)], cwd=work, env=env, stdin=terminal,
                           capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{section}:\n{r.stderr[-4000:]}"
