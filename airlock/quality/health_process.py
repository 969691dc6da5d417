"""The health child as a process: spawned isolated, polled for memory and time, killed whole.

:mod:`airlock.quality.health` hands a job (a JSON document) to
``python -I /abs/path/_health_child.py`` through :func:`run_child`, which
polls the child's peak RSS and wall clock and kills its process group past
either::

    budget, words = memory_budget(budgets, enforce_budgets=True)
    run = run_child(job, cwd=release_dir, timeout_s=30.0, budget_mb=budget)
    run.result        # the child's JSON result, or None (crashed, killed, printed nothing)
    run.timed_out, run.memory_killed, run.peak_mb, run.stderr_hint()
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import psutil

from airlock.limits import MAX_CHILD_OUTPUT_BYTES
from airlock.quality import _health_child
from airlock.quality._health_child import RESULT_MARKER
from airlock.spawn import child_env, python_argv

__all__ = ["WATCHDOG_GRACE_S", "ChildRun", "memory_budget", "run_child", "signal_name"]

_MiB = 1024 * 1024
_POLL_S = 0.01
# A check without max_memory_mb may still not take the machine down.
_CAP_FLOOR_MB = 256.0
_CAP_SHARE_OF_AVAILABLE = 0.75
# The child kills itself this long after its timeout if its parent is gone.
WATCHDOG_GRACE_S = 10.0
# Run by path, not ``-m``: ``-I`` keeps every directory but the interpreter's
# own out of sys.path, so this file is the one that runs, and imports only
# the standard library, numpy and onnxruntime.
_CHILD_SCRIPT = Path(_health_child.__file__).resolve()



class _MemoryBudget(Protocol):
    @property
    def max_memory_mb(self) -> float | None: ...


def memory_budget(spec: _MemoryBudget, enforce_budgets: bool) -> tuple[float, str]:
    """The RSS past which the child is killed: the budget where enforced, else the hard cap."""
    if spec.max_memory_mb is not None and enforce_budgets:
        return float(spec.max_memory_mb), f"max_memory_mb {spec.max_memory_mb:g}"
    available = psutil.virtual_memory().available / _MiB
    cap = max(_CAP_FLOOR_MB, round(available * _CAP_SHARE_OF_AVAILABLE))
    why = "no max_memory_mb set" if spec.max_memory_mb is None else "budgets not enforced here"
    return cap, f"hard cap {cap:g} MiB ({why}: {_CAP_SHARE_OF_AVAILABLE:.0%} of available memory)"


def signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


@dataclass
class ChildRun:
    returncode: int
    result: dict[str, Any] | None
    peak_mb: float | None
    timed_out: bool
    memory_killed: bool
    stderr_tail: str

    def stderr_hint(self) -> str:
        return f" (stderr: {self.stderr_tail})" if self.stderr_tail else ""


def run_child(job: dict[str, Any], cwd: Path, timeout_s: float,
               budget_mb: float) -> ChildRun:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            python_argv(_CHILD_SCRIPT, json.dumps(job)),
            cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_env(),
            start_new_session=True,  # own process group: killed as a whole
        )
        peak: float | None = None
        timed_out = memory_killed = False
        try:
            while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                now_peak = _peak_rss_mb(proc.pid)
                if now_peak is not None:
                    peak = max(peak or 0.0, now_peak)
                if peak is not None and peak > budget_mb:
                    memory_killed = True
                    break
                if time.monotonic() - start > timeout_s:
                    timed_out = True
                    break
                time.sleep(_POLL_S)
        finally:
            # The child is a zombie or still running, so its pid (= group id)
            # cannot have been reused: kill it and anything it started.
            _kill_group(proc.pid)
            returncode = proc.wait()
        result = _parse_result(out)
        if result is not None and isinstance(result.get("peak_rss_mb"), int | float):
            peak = max(peak or 0.0, float(result["peak_rss_mb"]))
        return ChildRun(returncode, result, peak, timed_out, memory_killed, _tail(err))


def _peak_rss_mb(pid: int) -> float | None:
    """The child's peak RSS so far: VmHWM on Linux, else the current RSS (psutil)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
        if m:
            return int(m.group(1)) / 1024
    except OSError:
        pass
    try:
        return float(psutil.Process(pid).memory_info().rss) / _MiB
    except psutil.Error:
        return None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _parse_result(out: IO[bytes]) -> dict[str, Any] | None:
    out.seek(0)
    data = out.read(MAX_CHILD_OUTPUT_BYTES).decode("utf-8", "replace")
    start = data.rfind(RESULT_MARKER)
    if start < 0:
        return None
    try:
        result = json.loads(data[start + len(RESULT_MARKER):])
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


def _tail(err: IO[bytes]) -> str:
    """The last non-empty stderr line, for a reason; ONNX Runtime noise is cut short."""
    err.seek(0, os.SEEK_END)
    err.seek(max(0, err.tell() - 4096))
    lines = [ln.strip() for ln in err.read().decode("utf-8", "replace").splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1][:200] if lines else ""
