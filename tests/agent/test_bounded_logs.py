"""``serve --log`` does not grow forever, and packaging/ ships the logrotate and
tmpfiles.d snippets that keep the agent's files in bounds on a real system."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.observe.logfile import RotatingLog
from agent.observe.serve import EventLog
from tests.support.cli import REPO


def test_the_serve_log_rotates_itself_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "serve.jsonl"
    log = EventLog(None)
    log._out = RotatingLog(path, max_bytes=4096, keep=2)
    for i in range(1000):
        log("drop-result", drop=f"/media/airlock/b{i}.airlock", outcome="rejected")
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["serve.jsonl", "serve.jsonl.1", "serve.jsonl.2"]
    assert all((tmp_path / n).stat().st_size <= 4096 for n in names)
    # The newest lines are kept, whole and in order, across the files.
    lines = [json.loads(line) for n in reversed(names)
             for line in (tmp_path / n).read_text().splitlines()]
    drops = [int(e["drop"].rsplit("b", 1)[1].split(".")[0]) for e in lines]
    assert drops == list(range(1000 - len(drops), 1000)) and len(drops) > 30


def test_the_serve_log_follows_logrotate_moving_it(tmp_path: Path) -> None:
    path = tmp_path / "serve.jsonl"
    log = RotatingLog(path)
    log.write("one\n")
    path.rename(tmp_path / "serve.jsonl-20260101")  # what logrotate does without copytruncate
    log.write("two\n")
    log.close()
    assert path.read_text() == "two\n"
    assert (tmp_path / "serve.jsonl-20260101").read_text() == "one\n"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed")
        pytest.skip(f"{name} is not installed")
    return found


def test_the_logrotate_snippet_rotates_the_serve_log(tmp_path: Path) -> None:
    logrotate = _tool("logrotate")
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "serve.jsonl").write_text('{"event":"serve-started"}\n' * 10)
    snippet = (REPO / "packaging" / "airlock-agent.logrotate").read_text()
    assert "/var/log/airlock/serve.jsonl {" in snippet
    # The same snippet, aimed at a scratch directory and owned by whoever runs the test.
    conf = tmp_path / "airlock.conf"
    conf.write_text(snippet.replace("/var/log/airlock", str(logs))
                    .replace("create 0640 root root", "create 0640"))
    p = subprocess.run([logrotate, "--force", "--state", str(tmp_path / "state"), str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in logs.iterdir()) == ["serve.jsonl", "serve.jsonl.1"]
    assert (logs / "serve.jsonl").stat().st_size == 0


def test_the_tmpfiles_snippet_makes_the_agent_directories(tmp_path: Path) -> None:
    tmpfiles = _tool("systemd-tmpfiles")
    snippet = REPO / "packaging" / "airlock-agent.tmpfiles"
    p = subprocess.run([tmpfiles, f"--root={tmp_path}", "--create", str(snippet)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert oct((tmp_path / "var/lib/airlock").stat().st_mode & 0o777) == "0o755"
    assert oct((tmp_path / "var/log/airlock").stat().st_mode & 0o777) == "0o750"
