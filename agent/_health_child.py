"""The child side of a model health check (private; run by agent.health only).

    python -I /path/to/agent/_health_child.py '<job JSON>'

Run by absolute path in isolated mode (agent.health builds the command line
with airlock.spawn), so it imports nothing of ours by name: only the
standard library, numpy and onnxruntime, from the interpreter's own
site-packages, and the two pure-numpy modules of the shared ground the job
names by absolute path (``airlock/evaluation.py``, ``airlock/npz_batches.py``;
loaded with importlib from the agent's own installation, never from the
release directory or the caller's).

Loads one model with ONNX Runtime, with the execution providers and session
options the job names (a provider that is not available fails the check
unless the job allows falling back; which provider ran which nodes is read
from ONNX Runtime's profile of the first run), runs the golden inputs (or
zeros of the declared shapes when there are none), compares every golden
output with numpy ``allclose`` semantics, times ``runs`` inferences, streams
the evaluation set through the model a batch at a time into the metric
tally, and prints one JSON object with the raw measurements. Policy
(budgets, thresholds, wording of reasons) lives in the parent; this side
only measures, and refuses data it cannot measure against: golden outputs
that hold no array or name what the model does not output, an evaluation
set that does not fit the model (the bundler refuses all of them at build,
exit 2).

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

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from types import ModuleType
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
    """Die if the agent dies or forgets us: an orphaned check must not spin forever.

    The agent kills the whole process group on timeout; this covers the case
    where the agent itself is killed (-9) first. ONNX Runtime releases the
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

    def __init__(self, message: str, **measured: Any) -> None:
        super().__init__(message)
        self.measured = measured  # what was measured before it failed (the provider report)


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


def _load(name: str, path: str) -> ModuleType:
    """One of our pure-numpy modules, by the absolute path the agent gave (see the docstring)."""
    spec = importlib.util.spec_from_file_location(f"_airlock_{name}", path)
    if spec is None or spec.loader is None:
        raise _Fail(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
_EXEC_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}


def _session_options(ort: Any, options: dict[str, Any], profile_dir: str | None) -> Any:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: warnings are noise in a check
    if options.get("graph_optimization_level"):
        opts.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _OPT_LEVELS[options["graph_optimization_level"]])
    if options.get("execution_mode"):
        opts.execution_mode = getattr(ort.ExecutionMode, _EXEC_MODES[options["execution_mode"]])
    if options.get("intra_op_threads") is not None:
        opts.intra_op_num_threads = int(options["intra_op_threads"])
    if options.get("inter_op_threads") is not None:
        opts.inter_op_num_threads = int(options["inter_op_threads"])
    if profile_dir is not None:
        # Only the first (warm-up) run is profiled: it says which provider ran each node.
        # Profiling keeps an event per node run in memory, so it is used only when
        # there is a split to report (more than one provider).
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(profile_dir, "profile")
    return opts


def _open_session(ort: Any, job: dict[str, Any], profile_dir: str) -> tuple[Any, dict[str, Any]]:
    """The session on the job's providers, and what was asked, available and used.

    A provider not available here fails the check unless ``provider_fallback``;
    with it, the missing ones are left out and the report says so. ONNX
    Runtime may also drop a provider it lists but cannot start (a GPU
    provider without its libraries): the session's own list tells.
    """
    available = list(ort.get_available_providers())
    wanted = list(job["providers"])
    fallback = bool(job.get("provider_fallback"))
    missing = [p for p in wanted if p not in available]
    report: dict[str, Any] = {"requested": wanted, "source": job.get("providers_from"),
                              "fallback_allowed": fallback, "available": available,
                              "missing": missing, "session": None, "nodes": None}
    if missing and not fallback:
        raise _Fail(f"execution provider {', '.join(missing)} is not available on this device "
                    f"(available: {', '.join(available)}); install it, or allow "
                    "provider_fallback to check on the others", providers=report)
    usable = [p for p in wanted if p in available]
    if not usable:
        raise _Fail(f"none of the providers {', '.join(wanted)} is available here "
                    f"(available: {', '.join(available)})", providers=report)
    opts = _session_options(ort, job.get("session") or {},
                            profile_dir if len(usable) > 1 else None)
    try:
        session = ort.InferenceSession(job["model"], sess_options=opts, providers=usable)
    except Exception as e:  # ORT raises its own (non-Exception-subclass-specific) types
        raise _Fail(f"ONNX Runtime cannot load the model: {_first_line(e)}",
                    providers=report) from e
    report["session"] = session.get_providers()
    dropped = [p for p in usable if p not in report["session"]]
    if dropped and not fallback:
        raise _Fail(f"execution provider {', '.join(dropped)} could not be started (ONNX Runtime "
                    f"fell back to {', '.join(report['session'])}); allow provider_fallback to "
                    "accept that", providers=report)
    report["missing"] = missing + dropped
    return session, report


def _node_providers(session: Any, limit: int) -> dict[str, int] | None:
    """Nodes per execution provider, from the profile of the runs so far (then profiling stops)."""
    path = session.end_profiling()
    try:
        if not path or os.path.getsize(path) > limit:
            return None
        with open(path, encoding="utf-8") as f:
            events = json.load(f)
    except (OSError, ValueError):
        return None
    finally:
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)
    nodes: dict[str, set[str]] = {}
    for e in events if isinstance(events, list) else []:
        args = e.get("args") if isinstance(e, dict) else None
        if e.get("cat") == "Node" and isinstance(args, dict) and "provider" in args:
            name = str(e.get("name", "")).removesuffix("_kernel_time")
            nodes.setdefault(str(args["provider"]), set()).add(name)
    return {p: len(names) for p, names in sorted(nodes.items())}


def _check(job: dict[str, Any]) -> dict[str, Any]:
    profile_dir = tempfile.mkdtemp(prefix="airlock-health-")
    try:
        return _check_in(job, profile_dir)
    finally:
        shutil.rmtree(profile_dir, ignore_errors=True)


def _check_in(job: dict[str, Any], profile_dir: str) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    out: dict[str, Any] = {"runtime_rss_mb": _hwm_mb(), "notes": []}
    session, providers = _open_session(ort, job, profile_dir)
    out["providers"] = providers
    if providers["missing"]:
        out["notes"].append(f"fell back: {', '.join(providers['missing'])} not available, ran on "
                            f"{', '.join(providers['session'])}")
    if os.environ.get(_TEST_FAULT) == "health-crash":
        os.kill(os.getpid(), signal.SIGSEGV)

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
    else:
        feed = {
            name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in i.shape],
                           _numpy_dtype(i.type))
            for name, i in declared.items()
        }
        out["notes"].append("no golden data: ran on zeros of the declared input shapes, "
                            "outputs not checked")

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
        out["notes"].append("golden inputs but no golden outputs: outputs not checked")

    try:
        # The first run doubles as warm-up, so it is not timed.
        results = session.run(None, feed)
    except Exception as e:
        raise _Fail(f"inference failed: {_first_line(e)}", providers=providers) from e
    if session.get_session_options().enable_profiling:
        providers["nodes"] = _node_providers(session, int(job["max_profile_bytes"]))
    else:
        providers["nodes"] = {providers["session"][0]: "all"}
    by_name = dict(zip([o.name for o in session.get_outputs()], results, strict=True))
    out["outputs"] = {
        name: _compare(by_name[name], expected, job["rtol"], job["atol"])
        for name, expected in sorted(golden.items())
    }

    times = []
    for _ in range(max(1, int(job["runs"]))):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000)
    out["runs"] = len(times)
    out["p95_ms"] = float(np.percentile(times, 95))
    if job.get("evaluate"):
        out["evaluation"] = _evaluate(session, job["evaluate"], set(declared),
                                      {o.name for o in session.get_outputs()})
    out["peak_rss_mb"] = _hwm_mb()
    return out


def _evaluate(session: Any, ev: dict[str, Any], inputs: set[str],
              outputs: set[str]) -> dict[str, Any]:
    """Stream the set through the model ``batch`` rows at a time; the metrics of the tally."""
    evaluation = _load("evaluation", ev["modules"]["evaluation"])
    npz = _load("npz_batches", ev["modules"]["npz_batches"])
    try:
        metrics = [evaluation.parse_metric(n, max_k=ev["max_k"], max_classes=ev["max_classes"])
                   for n in ev["metrics"]]
        tally = evaluation.new_tally(metrics, max_classes=ev["max_classes"])
    except evaluation.EvaluationError as e:
        raise _Fail(f"evaluation: {e}") from e
    start_time = time.perf_counter()
    batch, limit = int(ev["batch"]), ev.get("max_samples")
    try:
        with npz.NpzRows(ev["data"]) as data, npz.NpzRows(ev["labels"]) as labels:
            missing, extra = sorted(inputs - set(data.arrays)), sorted(set(data.arrays) - inputs)
            if missing or extra:
                raise _Fail(f"evaluation set lacks input(s) {missing} or names others {extra}")
            if len(labels.arrays) != 1 or next(iter(labels.arrays)) not in outputs:
                raise _Fail(f"evaluation labels must hold one array named after a model output "
                            f"(they hold {sorted(labels.arrays)})")
            output = next(iter(labels.arrays))
            if labels.count != data.count:
                raise _Fail(f"evaluation labels have {labels.count} rows for {data.count} samples")
            rows = data.batches(batch, limit=limit, max_batch_bytes=ev["max_batch_bytes"])
            truth = labels.batches(batch, limit=limit, max_batch_bytes=ev["max_batch_bytes"])
            for (start, feed), (_, expected) in zip(rows, truth, strict=True):
                try:
                    (got,) = session.run([output], feed)
                except Exception as e:
                    raise _Fail(f"inference failed on evaluation samples {start}.."
                                f"{start + len(expected[output]) - 1}: {_first_line(e)}") from e
                try:
                    tally.add(got, expected[output])
                except evaluation.EvaluationError as e:
                    raise _Fail(f"evaluation at samples {start}..: {e}") from e
    except npz.NpzRowsError as e:
        raise _Fail(f"evaluation set: {e}") from e
    try:
        result: dict[str, Any] = tally.result(metrics, detailed_classes=ev["detailed_classes"])
    except evaluation.EvaluationError as e:
        raise _Fail(f"evaluation: {e}") from e
    result["output"] = output
    result["batch"] = batch
    result["seconds"] = round(time.perf_counter() - start_time, 4)
    result["metrics"] = {k: _metric(v) for k, v in result["metrics"].items()}
    return result


def _metric(v: Any) -> float | None:
    """A metric as JSON carries it: NaN and infinities (no value) become null."""
    if v is None:
        return None
    f = float(v)
    return f if f == f and abs(f) != float("inf") else None


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
        result = {"error": str(e), "peak_rss_mb": _hwm_mb(), **e.measured}
    except Exception as e:  # anything else is still a failed check, worded by the parent
        result = {"error": f"{type(e).__name__}: {_first_line(e)}", "peak_rss_mb": _hwm_mb()}
    result_out.write(RESULT_MARKER + json.dumps(result) + "\n")
    result_out.flush()


if __name__ == "__main__":
    main()
