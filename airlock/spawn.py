"""How Airlock starts every child process: fixed directory, allowlisted environment, contained.

The agent runs as root, often from a directory it does not control (a USB
stick, ``/tmp`` for a cron job), under an environment it did not choose. So
nothing of the caller's directory or environment reaches a child by accident:

* **Python children** run as ``python -I /absolute/path/script.py``: isolated
  mode keeps the current directory, the script's directory, ``PYTHON*``
  variables and the user site out of ``sys.path`` (:func:`python_argv`).
* **Every child** gets a fixed working directory from its caller and an
  environment built from an allowlist (:func:`child_env`): ``PATH`` (without
  empty or relative entries), ``HOME``, ``LANG``, ``LANGUAGE``, ``LC_*``,
  ``TZ``, ``TMPDIR`` and ``AIRLOCK_*`` (``AIRLOCK_TEST_FAULT`` included, so
  the test-only faults still reach a health child). Nothing else passes: no
  ``PYTHONPATH``, ``PYTHONSTARTUP``, ``PYTHONHOME``, ``LD_PRELOAD``,
  ``LD_LIBRARY_PATH``, ``BASH_ENV`` or ``ENV``.
* **Commands** (hooks, probes, the image sink's command) run through
  :func:`run_contained`: in a new session (their own process group), output
  spooled to an unlinked temp file rather than a pipe, killed with their whole
  group when they overrun::

      env = child_env({"AIRLOCK_RELEASE": "vision-7"})
      done = run_contained("systemctl restart vision", cwd=release_dir, env=env,
                           timeout_s=30, shell=True)
      done.ok, done.timed_out, done.last_line(), done.output_tail

  A command that exits is done, even when something it started in the
  background (``service &``) still holds its stdout: that is how a hook starts
  a daemon, so background children are left running. Only a command that
  overruns ``timeout_s`` is killed, with everything in its process group.
  The output kept is the tail (``MAX_OUTPUT_TAIL_BYTES``); the spool file is
  cut back whenever it passes ``MAX_OUTPUT_SPOOL_BYTES``, so a command that
  floods its stdout fills neither memory nor disk while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from airlock.limits import MAX_OUTPUT_SPOOL_BYTES, MAX_OUTPUT_TAIL_BYTES

__all__ = [
    "ENV_NAMES",
    "ENV_PREFIXES",
    "ChildResult",
    "child_env",
    "clean_path",
    "python_argv",
    "run_contained",
]

#: Variables a child inherits from the caller, by exact name.
ENV_NAMES: tuple[str, ...] = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
#: ... and by prefix.
ENV_PREFIXES: tuple[str, ...] = ("LC_", "AIRLOCK_")
#: PATH when the caller has none (sudo's ``secure_path``).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_POLL_S = 0.02


def clean_path(value: str | None) -> str:
    """``PATH`` without empty or relative entries: those resolve in the current directory."""
    kept = [p for p in (value or "").split(os.pathsep) if os.path.isabs(p)]
    return os.pathsep.join(kept) if kept else DEFAULT_PATH


def child_env(extra: Mapping[str, str] | None = None, *,
              names: Iterable[str] = (), prefixes: Iterable[str] = (),
              environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment reduced to the allowlist (plus ``names``/``prefixes``), then ``extra``."""
    source = os.environ if environ is None else environ
    allowed_names = {*ENV_NAMES, *names}
    allowed_prefixes = (*ENV_PREFIXES, *prefixes)
    env = {k: v for k, v in source.items()
           if k in allowed_names or k.startswith(allowed_prefixes)}
    env["PATH"] = clean_path(source.get("PATH"))
    env.update(extra or {})
    return env


def python_argv(script: Path, *args: str) -> list[str]:
    """This interpreter running ``script`` (an absolute path) in isolated mode."""
    if not script.is_absolute():
        raise ValueError(f"{script} is not an absolute path")
    return [sys.executable, "-I", str(script), *args]


@dataclass(frozen=True)
class ChildResult:
    """How a contained command ended; ``returncode`` is None when it was killed for overrunning."""

    returncode: int | None
    timed_out: bool
    output_tail: str  # last MAX_OUTPUT_TAIL_BYTES of stdout and stderr, interleaved
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def last_line(self, limit: int = 200) -> str:
        lines = [ln.strip() for ln in self.output_tail.splitlines()]
        lines = [ln for ln in lines if ln]
        return lines[-1][:limit] if lines else ""


def run_contained(command: str | Sequence[str], *, cwd: Path, env: Mapping[str, str],
                  timeout_s: float, shell: bool = False) -> ChildResult:
    """Run ``command`` in ``cwd`` with exactly ``env``, in its own session, for at most ``timeout_s``.

    Raises OSError when it cannot start (no such program, no such ``cwd``).
    """
    with tempfile.TemporaryFile() as spool:
        # O_APPEND on the shared description: every write lands at the end,
        # so cutting the file back to zero never leaves a hole behind it.
        flags = fcntl.fcntl(spool.fileno(), fcntl.F_GETFL)
        fcntl.fcntl(spool.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)
        start = time.monotonic()
        proc = subprocess.Popen(
            command, shell=shell, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=spool, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = start + max(timeout_s, 0.1)
        carried = b""  # the tail from before the last cut
        returncode: int | None = None
        try:
            while True:
                try:
                    # Waits for the command itself only: a background child
                    # holding the spool open does not keep us here.
                    returncode = proc.wait(timeout=max(0.0, min(_POLL_S, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        break
                    carried = _cut_back(spool, carried)
        finally:
            if returncode is None:
                # Not reaped yet, so its pid (= the group id) cannot have been
                # reused: the group is still the command and its children.
                _kill_group(proc.pid)
                proc.wait()
        tail = _tail(spool, carried)
        return ChildResult(returncode, returncode is None, tail,
                           round(time.monotonic() - start, 3))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _cut_back(spool: IO[bytes], carried: bytes) -> bytes:
    """Keep the tail in memory and empty the spool once it passes its bound."""
    size = os.fstat(spool.fileno()).st_size
    if size <= MAX_OUTPUT_SPOOL_BYTES:
        return carried
    spool.seek(max(0, size - MAX_OUTPUT_TAIL_BYTES))
    kept = spool.read(MAX_OUTPUT_TAIL_BYTES)
    os.ftruncate(spool.fileno(), 0)
    return kept


def _tail(spool: IO[bytes], carried: bytes) -> str:
    size = os.fstat(spool.fileno()).st_size
    spool.seek(max(0, size - MAX_OUTPUT_TAIL_BYTES))
    data = spool.read(MAX_OUTPUT_TAIL_BYTES)
    data = (carried + data)[-MAX_OUTPUT_TAIL_BYTES:]
    return data.decode("utf-8", "replace")
