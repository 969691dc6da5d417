"""``serve``'s listener under idle and half-sent connections (issue 24, class 7).

A real ``airlock-agent serve`` on 127.0.0.1: 150 connections that send
nothing and 20 that send half a request line hold no thread each (the
process's thread count, from /proc, stays bounded by ``MAX_HTTP_HANDLERS``),
``/healthz`` still answers at once, and the half-sent ones are closed once
``HTTP_REQUEST_TIMEOUT_S`` passes.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from airlock.limits import HTTP_REQUEST_TIMEOUT_S, MAX_HTTP_HANDLERS
from tests.support.device import init_device
from tests.support.keyset import Keys
from tests.support.serve import Serve


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def test_idle_and_half_sent_connections_hold_no_threads(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "root", keyset)
    with Serve.start(root) as s:
        assert s.get("/healthz")
        before = _threads(s.proc.pid)
        idle = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(150)]
        half = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(20)]
        for c in half:
            c.sendall(b"GET /metr")  # and nothing more
        try:
            time.sleep(1.0)
            assert _threads(s.proc.pid) <= before + MAX_HTTP_HANDLERS
            start = time.monotonic()
            assert '"ok": true' in s.get("/healthz")
            assert time.monotonic() - start < 5
            # The half-sent requests are given up on: their sockets are closed by serve.
            deadline = time.monotonic() + HTTP_REQUEST_TIMEOUT_S * 3 + 10
            closed = 0
            for c in half:
                c.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    closed += c.recv(1) == b""
                except ConnectionResetError:
                    closed += 1
                except TimeoutError:
                    pass  # still held open: counted as not closed
            assert closed == len(half)
            assert '"ok": true' in s.get("/healthz")
        finally:
            for c in idle + half:
                c.close()
