"""The child side of a model health check (private; run by airlock.health only).

    python -I /path/to/airlock/_health_child.py '<job JSON>'

Run by absolute path in isolated mode (airlock.health builds the command line
with airlock.spawn), so it imports nothing of ours: only the standard
library, numpy and onnxruntime, from the interpreter's own site-packages.
The agent runs it on a staged release, the bundler on the spec's files
before it signs: the same process, the same comparisons.

Loads one model with ONNX Runtime, builds its feed (the golden inputs, or
zeros of the declared shapes when there are none), then runs the
:data:`STEPS` in order, each adding its measurements to one JSON object::

    STEPS = (_golden_outputs, _latency)   # a new kind of check is one more step

``_golden_outputs`` runs the feed once (the untimed warm-up) and compares
every golden output with numpy ``allclose`` semantics; ``_latency`` times
``runs`` inferences. Policy (budgets, wording of reasons, what is enforced
where) lives in the parent; this side only measures, and refuses golden
data it cannot measure against: outputs that hold no array or name what the
model does not output (the bundler refuses both at build, exit 2).

File descriptor 1 is kept for the result alone: before ONNX Runtime is
imported it is duplicated and then pointed at stderr, so whatever ONNX Runtime or a custom op prints to
stdout from native code cannot corrupt the JSON.

``AIRLOCK_TEST_FAULT=health-crash`` (tests only) makes this process kill
itself with SIGSEGV right after the model is loaded, to prove a crashing
runtime is a failed check and not a crashed agent. ``health-noise`` writes a
fake result and noise to the real stdout and to stderr before anything else,
as a native library loaded at start-up could, to prove the result survives.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_TEST_FAULT = "AIRLOCK_TEST_FAULT"
# Frames the result, so even bytes that reach fd 1 before the redirect above
# (a sitecustomize, a preloaded library) cannot be mistaken for it.
RESULT_MARKER = "\n@@airlock-health-result@@"


def _hwm_mb() -> float | None:
    """Peak RSS of this process so far (Linux VmHWM; reset at exec, unlike ru_maxrss)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        m = None
    if m:
        return int(m.group(1)) / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _watchdog(limit_s: float) -> None:
    """Die if the parent (agent or bundler) dies or forgets us: an orphaned check must not spin forever.

    The parent kills the whole process group on timeout; this covers the case
    where the parent itself is killed (-9) first. ONNX Runtime releases the
    GIL while it runs, so this thread keeps running during a hung inference.
    """
    parent = os.getppid()
    deadline = time.monotonic() + limit_s
    while True:
        time.sleep(0.5)
        if os.getppid() != parent or time.monotonic() > deadline:
            os.kill(os.getpid(), signal.SIGKILL)


def _numpy_dtype(ort_type: str) -> Any:
    import numpy as np

    names = {
        "float": np.float32, "double": np.float64, "float16": np.float16,
        "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
        "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
        "bool": np.bool_, "string": np.str_,
    }
    m = re.fullmatch(r"tensor\((\w+)\)", ort_type)
    if not m or m.group(1) not in names:
        raise _Fail(f"input type {ort_type} is not supported for zero inputs; ship golden inputs")
    return names[m.group(1)]


class _Fail(Exception):
    """A check failure this side can word precisely (missing input, bad golden data...)."""


def _compare(got: Any, expected: Any, rtol: float, atol: float) -> dict[str, Any]:
    """allclose semantics, plus the element that breaks (or nearly breaks) them most."""
    import numpy as np

    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return {"ok": False, "shape": list(got.shape), "expected_shape": list(expected.shape)}
    if got.size == 0:
        return {"ok": True, "index": None}
    if got.dtype.kind in "OSUV" or expected.dtype.kind in "OSUV":
        differs = got != expected
        ok = not bool(differs.any())
        flat = int(np.argmax(differs)) if not ok else 0
        idx = np.unravel_index(flat, got.shape)
        return {"ok": ok, "index": [int(i) for i in idx], "got": str(got[idx]),
                "expected": str(expected[idx]), "abs_err": None, "tol": 0.0}
    g = got.astype(np.float64)
    e = expected.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - e)
        tol = atol + rtol * np.abs(e)
        # Equal infinities are close (as in allclose); a NaN never is.
        same_inf = np.isinf(g) & np.isinf(e) & (g == e)
        err = np.where(same_inf, 0.0, err)
        excess = np.where(np.isnan(err), np.inf, err - tol)
    flat = int(np.argmax(excess))
    idx = np.unravel_index(flat, got.shape)
    ok = bool(np.all(excess <= 0))
    return {
        "ok": ok,
        "index": [int(i) for i in idx],
        "got": _num(g[idx]),
        "expected": _num(e[idx]),
        "abs_err": _num(err[idx]),
        "tol": _num(tol[idx]),
    }


def _num(x: Any) -> float | str:
    v = float(x)
    # JSON has no NaN/inf; keep them readable.
    return v if v == v and abs(v) != float("inf") else str(v)


@dataclass
class _Run:
    """What every step sees: the loaded session, its feed, the job, and the result so far."""

    session: Any
    feed: dict[str, Any]
    job: dict[str, Any]
    out: dict[str, Any]


def _load(job: dict[str, Any], out: dict[str, Any]) -> Any:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = list(job["providers"])
    usable = [p for p in wanted if p in available]
    if not usable:
        raise _Fail(f"none of the providers {wanted} is available here "
                    f"(available: {', '.join(available)})")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: warnings are noise in a check
    try:
        session = ort.InferenceSession(job["model"], sess_options=opts, providers=usable)
    except Exception as e:  # ORT raises its own (non-Exception-subclass-specific) types
        raise _Fail(f"ONNX Runtime cannot load the model: {_first_line(e)}") from e
    out["providers"] = session.get_providers()
    if os.environ.get(_TEST_FAULT) == "health-crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    return session


def _feed(session: Any, job: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    declared = {i.name: i for i in session.get_inputs()}
    if job.get("inputs"):
        with np.load(job["inputs"], allow_pickle=False) as npz:
            feed = {k: npz[k] for k in npz.files}
        missing = sorted(set(declared) - set(feed))
        extra = sorted(set(feed) - set(declared))
        if missing:
            raise _Fail(f"golden inputs lack model input(s) {', '.join(map(repr, missing))}")
        if extra:
            raise _Fail(f"golden inputs name {', '.join(map(repr, extra))}, "
                        f"which the model does not take")
        return feed
    out["notes"].append("no golden data: ran on zeros of the declared input shapes, "
                        "outputs not checked")
    return {
        name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in i.shape],
                       _numpy_dtype(i.type))
        for name, i in declared.items()
    }


def _golden_outputs(run: _Run) -> None:
    """Run the feed once (the untimed warm-up) and compare each golden output."""
    import numpy as np

    job, session = run.job, run.session
    golden: dict[str, Any] = {}
    if job.get("outputs"):
        with np.load(job["outputs"], allow_pickle=False) as npz:
            golden = {k: npz[k] for k in npz.files}
        names = {o.name for o in session.get_outputs()}
        if not golden:
            raise _Fail("golden outputs hold no array: the check would compare nothing")
        unknown = sorted(set(golden) - names)
        if unknown:
            raise _Fail(f"golden output(s) {', '.join(map(repr, unknown))} "
                        f"are not outputs of the model")
    elif job.get("inputs"):
        run.out["notes"].append("golden inputs but no golden outputs: outputs not checked")
    try:
        results = session.run(None, run.feed)
    except Exception as e:
        raise _Fail(f"inference failed: {_first_line(e)}") from e
    by_name = dict(zip([o.name for o in session.get_outputs()], results, strict=True))
    run.out["outputs"] = {
        name: _compare(by_name[name], expected, job["rtol"], job["atol"])
        for name, expected in sorted(golden.items())
    }


def _latency(run: _Run) -> None:
    """Time ``runs`` inferences of the feed; the parent takes the p95 to the budget."""
    import numpy as np

    times = []
    for _ in range(max(1, int(run.job["runs"]))):
        t0 = time.perf_counter()
        run.session.run(None, run.feed)
        times.append((time.perf_counter() - t0) * 1000)
    run.out["runs"] = len(times)
    run.out["p95_ms"] = float(np.percentile(times, 95))


#: The checks, in order, after the model is loaded and its feed built. A step
#: that finds the model wrong raises _Fail; otherwise it adds measurements.
STEPS: tuple[Callable[[_Run], None], ...] = (_golden_outputs, _latency)


def _check(job: dict[str, Any]) -> dict[str, Any]:
    # Imported first so that runtime_rss_mb is the runtime's own weight, before the model.
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401

    out: dict[str, Any] = {"runtime_rss_mb": _hwm_mb(), "notes": []}
    session = _load(job, out)
    run = _Run(session, _feed(session, job, out), job, out)
    for step in STEPS:
        step(run)
    out["peak_rss_mb"] = _hwm_mb()
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def main() -> None:
    if os.environ.get(_TEST_FAULT) == "health-noise":
        os.write(1, b'{"ok": true}\nnoise on stdout\n')
        os.write(2, b"warning: noise on stderr\n")
    # Before ONNX Runtime is imported: keep the real stdout for the result only.
    result_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    job = json.loads(sys.argv[1])
    threading.Thread(target=_watchdog, args=(float(job["watchdog_s"]),), daemon=True).start()
    try:
        result = _check(job)
    except _Fail as e:
        result = {"error": str(e), "peak_rss_mb": _hwm_mb()}
    except Exception as e:  # anything else is still a failed check, worded by the parent
        result = {"error": f"{type(e).__name__}: {_first_line(e)}", "peak_rss_mb": _hwm_mb()}
    result_out.write(RESULT_MARKER + json.dumps(result) + "\n")
    result_out.flush()


if __name__ == "__main__":
    main()
