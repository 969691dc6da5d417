"""A device acting as the site relay: ``airlock-agent serve --registry`` as a real process.

    with relay_of(root_a, port) as relay:          # serve --registry 127.0.0.1:PORT
        relay.url("/bundles/site-1.airlock")
        relay.kill9()                              # a real SIGKILL; restart() brings it back

The relay answers once ``GET /v2/`` does; ``kill9`` is the crash of the box
in the middle of a transfer, and ``restart`` starts it again on the same port.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import tool_env


@dataclass
class Relay:
    root: Path
    port: int
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        log = self.root.parent / f"relay-{time.monotonic_ns()}.jsonl"
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "--root", str(self.root), "serve", "--listen",
             "127.0.0.1:0", "--check-every", "0", "--poll", "0.5", "--log", str(log),
             "--registry", f"127.0.0.1:{self.port}", *self.extra],
            env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"relay exited {self.proc.returncode}"
            try:
                with urllib.request.urlopen(self.url("/v2/"), timeout=5):
                    return
            except urllib.error.HTTPError:
                return  # answering: a read token is asked for
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the relay did not answer /v2/ within 60 s")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def restart(self) -> None:
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def relay_of(root: Path, port: int, *extra: str) -> Iterator[Relay]:
    relay = Relay(root, port, tuple(extra))
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()
