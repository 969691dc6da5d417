"""Hooks, probes and the image-sink command are contained (issue 13, class 4).

A signed hook runs as root with the signer's authority, but a careless one
must not leave the device worse off: an overrunning hook or command probe is
killed with everything it started (no orphan), a hook that starts a
background service (``cmd &``, even one that keeps the hook's stdout) is a
supported pattern that returns at once, output is kept as a bounded tail in
the journal, and an HTTP probe's window is a hard deadline even against a
server on 127.0.0.1 that answers one byte per second.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.sinks.command import CommandSink
from airlock.errors import DeliveryError
from airlock.format.oci import OCI_MANIFEST
from airlock.limits import MAX_JOURNAL_TEXT_CHARS, MAX_OUTPUT_SPOOL_BYTES, MAX_OUTPUT_TAIL_BYTES
from airlock.spawn import child_env, run_contained
from keys.release import ImageEntry, Release
from tests.support.cli import run_agent
from tests.support.device import assert_consistent, init_device
from tests.support.keyset import Keys


def _sleeping(pid: int) -> bool:
    """Is ``pid`` still our ``sleep 300``? (A killed orphan may linger as a zombie.)"""
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and p.cmdline()[:2] == ["sleep", "300"]
    except psutil.Error:
        return False


def _journal(root: Path, event: str) -> list[dict[str, Any]]:
    lines = (root / "journal.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids a test started on purpose (daemons); killed whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("which", ["post_switch", "probe"])
def test_overrunning_hook_or_probe_is_killed_with_its_children(
        which: str, keyset: Keys, make_bundle: Callable[..., Path], tmp_path: Path,
        leftovers: list[int]) -> None:
    pids = tmp_path / "pids"
    cmd = f"sleep 300 & echo $! >> {pids}; sleep 300 & echo $! >> {pids}; wait"
    bundle = make_bundle(sequence=1, extra={"hooks": {which: cmd, "probe_window_s": 1}})
    root = init_device(tmp_path / "device", keyset)

    r = run_agent("--root", root, "install", bundle)

    assert r.returncode == 4, r.stderr
    assert "did not finish within" in r.stderr and "(killed)" in r.stderr, r.stderr
    started = [int(p) for p in pids.read_text().split()]
    leftovers.extend(started)
    assert len(started) == 2
    deadline = time.monotonic() + 5
    while any(map(_sleeping, started)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_sleeping, started)), "a child of the killed command survived"
    ran = _journal(root, "hook-ran" if which == "post_switch" else "probe-ran")
    assert ran and not ran[-1]["ok"] and ran[-1]["seconds"] < 3
    assert assert_consistent(root)["active"] is None


@pytest.mark.parametrize("daemon", [
    "sleep 300 > /dev/null 2>&1 < /dev/null &",  # the documented way
    "sleep 300 &",  # keeps the hook's stdout and stderr open
    "setsid sleep 300 > /dev/null 2>&1 < /dev/null &",  # its own session too
], ids=["redirected", "inherits-stdout", "setsid"])
def test_hook_that_starts_a_daemon_succeeds_promptly(
        daemon: str, keyset: Keys, make_bundle: Callable[..., Path], tmp_path: Path,
        leftovers: list[int]) -> None:
    pid_file = tmp_path / "daemon.pid"
    hooks = {"post_switch": f"{daemon} echo $! > {pid_file}; echo service started",
             "probe": "true", "probe_window_s": 30}
    bundle = make_bundle(sequence=1, extra={"hooks": hooks})
    root = init_device(tmp_path / "device", keyset)

    r = run_agent("--root", root, "install", bundle, "--json", timeout=60)

    assert r.returncode == 0, r.stderr
    daemon_pid = int(pid_file.read_text())
    leftovers.append(daemon_pid)
    hook = json.loads(r.stdout)["activation"]["hook"]
    assert hook["ok"] and hook["seconds"] < 5, hook
    assert hook["output_tail"] == "service started\n"
    assert _sleeping(daemon_pid), "the service the hook started was killed"
    assert assert_consistent(root)["active"]["id"] == "vision-1"


def test_hook_output_is_kept_as_a_bounded_tail(
        keyset: Keys, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    hook = ("head -c 3000000 /dev/zero | tr '\\0' x; echo; "
            "echo 'disk is full, giving up' >&2; exit 3")
    bundle = make_bundle(sequence=1, extra={"hooks": {"post_switch": hook}})
    root = init_device(tmp_path / "device", keyset)

    r = run_agent("--root", root, "install", bundle)

    assert r.returncode == 4
    assert "post_switch hook failed: '" in r.stderr
    assert "exited 3: disk is full, giving up" in r.stderr
    # The journal stores text inert (line breaks escaped as "\\n", every line ASCII JSON)
    # and at most MAX_JOURNAL_TEXT_CHARS: the tail keeps its last line, bounded.
    tail = _journal(root, "hook-ran")[-1]["output_tail"]
    assert MAX_OUTPUT_TAIL_BYTES - 64 <= len(tail.encode()) <= MAX_JOURNAL_TEXT_CHARS + 64
    assert tail.endswith("x\\ndisk is full, giving up\\n")
    journal = root / "journal.jsonl"
    assert max(map(len, journal.read_bytes().splitlines())) < 2 * MAX_OUTPUT_TAIL_BYTES
    assert run_agent("--root", root, "history", "--verify").returncode == 0


def test_flooding_command_neither_fills_the_disk_nor_loses_its_last_line(tmp_path: Path) -> None:
    # 20 MB in 100 kB steps, then the shell asks how big its own stdout (the
    # spool file) is: it is cut back to its tail as it grows (20 MB if not).
    cmd = ("for i in $(seq 200); do head -c 100000 /dev/zero | tr '\\0' y; sleep 0.002; done; "
           "echo; echo spool=$(stat -L -c %s /proc/$$/fd/1)")
    done = run_contained(cmd, cwd=tmp_path, env=child_env(), timeout_s=60, shell=True)

    assert done.ok, done
    assert len(done.output_tail.encode()) == MAX_OUTPUT_TAIL_BYTES
    last = done.last_line()
    assert last.startswith("spool=")
    assert int(last.split("=")[1]) < MAX_OUTPUT_SPOOL_BYTES + 5 * 1024 * 1024
    assert done.output_tail.rstrip("\n").split("\n")[-2].strip("y") == ""


class _Drip(BaseHTTPRequestHandler):
    """Answers 200, one byte per second: every read succeeds, the answer never ends in time."""

    def do_GET(self) -> None:
        with contextlib.suppress(OSError):
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                self.wfile.write(bytes([byte]))
                time.sleep(1)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def drip_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


def test_http_probe_window_is_a_hard_deadline_against_a_slow_drip(
        keyset: Keys, make_bundle: Callable[..., Path], tmp_path: Path, drip_url: str) -> None:
    window = 3
    bundle = make_bundle(sequence=1, extra={"hooks": {"probe": drip_url,
                                                      "probe_window_s": window}})
    root = init_device(tmp_path / "device", keyset)

    r = run_agent("--root", root, "install", bundle, timeout=120)

    assert r.returncode == 4, r.stderr
    assert f"probe failed for {window} s: {drip_url}: no answer within" in r.stderr
    probe = _journal(root, "probe-ran")[-1]
    assert not probe["ok"] and probe["seconds"] < window + 1, probe


def test_image_sink_command_that_overruns_is_killed_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(b"{}")
    image = ImageEntry("site:5000/app:1", "sha256:" + "a" * 64, OCI_MANIFEST)
    release = Release("app", "1", 1, datetime.now(timezone.utc), images=[image])
    config = {"type": "command", "timeout_s": 1,
              "command": f"sh -c 'sleep 300 & echo $! > {pids}; sleep 300'"}
    sink = CommandSink.from_config(config, tmp_path / "images")

    start = time.monotonic()
    with pytest.raises(DeliveryError, match=r"did not finish within 1s \(for site:5000/app:1; killed\)"):
        sink.deliver(release, lambda digest: manifest)

    assert time.monotonic() - start < 5
    background = int(pids.read_text())
    deadline = time.monotonic() + 5
    while _sleeping(background) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _sleeping(background)
