"""``airlock-agent serve`` as a test runs it: a real process on 127.0.0.1, its event log, scrapes.

    with Serve.start(root, watch=[stick]) as s:          # --listen 127.0.0.1:0, fast polls
        s.wait_event("drop-result", drop=str(stick / "v1.airlock"))
        text = s.get("/metrics")
        assert metric(text, "airlock_installs_total", result="installed") == 1
    # leaving the block sends SIGTERM and waits for exit 0

``promtool_check`` runs the real ``promtool check metrics`` (Debian's
``prometheus`` package) on an exposition.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cli import tool_env
from tests.support.registry import need_tools


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @classmethod
    @contextmanager
    def start(cls, root: Path, *, watch: Sequence[Path] = (), check_every: str = "0",
              extra: Sequence[str] = (), env: dict[str, str] | None = None,
              log: Path | None = None, agent: Sequence[str] | None = None,
              environ: Mapping[str, str] | None = None) -> Iterator[Serve]:
        """``agent``: the agent's command (default: this checkout's); ``environ``: its whole
        environment (default: ``tool_env(env)``), e.g. a kit-installed device's."""
        log = log or root.parent / f"serve-{time.monotonic_ns()}.jsonl"
        args = [*(agent or (sys.executable, "-m", "agent")), "--root", str(root), "serve",
                "--listen", "127.0.0.1:0", "--check-every", check_every, "--poll", "0.2",
                "--settle", "0.4", "--log", str(log), *extra]
        for w in watch:
            args += ["--watch", str(w)]
        proc = subprocess.Popen(args, env=dict(environ) if environ is not None else tool_env(env),
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        s = cls(proc, log)
        try:
            started = s.wait_event("serve-started")
            s.port = int(str(started["listen"]).rsplit(":", 1)[1])
            yield s
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def events(self) -> list[dict[str, Any]]:
        try:
            lines = self.log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def wait_event(self, event: str, timeout: float = 60, after: int = 0,
                   **match: Any) -> dict[str, Any]:
        """The first ``event`` (from the ``after``-th log line on) whose fields match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events()[after:]:
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"serve exited {self.proc.returncode} before {event}: "
                                     f"{err[-2000:]}")
            time.sleep(0.05)
        raise AssertionError(f"no {event} {match} within {timeout} s; log: {self.events()[-5:]}")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return str(r.read().decode())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels`` (None if absent)."""
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` on an exposition: lint errors fail it (exit 1)."""
    need_tools("promtool")
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
