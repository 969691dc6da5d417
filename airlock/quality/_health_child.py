"""The child side of a model health check (private; run by airlock.quality.health only).

    python -I /path/to/airlock/_health_child.py '<job JSON>'

Run by absolute path in isolated mode (airlock.quality.health builds the command line
with airlock.spawn), so it imports nothing of ours by name: only the
standard library, numpy and onnxruntime, from the interpreter's own
site-packages, and the modules of the shared ground that sit beside it
(``evaluation.py``, ``npz_batches.py``, ``shadow_run.py``: pure numpy; ``model_skeleton.py``:
the standard library only), loaded with importlib by
the absolute path of this file, never from the release directory or the
caller's. The agent runs it on a staged release, the bundler on the spec's
files before it signs: the same process, the same comparisons.

Loads one model with ONNX Runtime, with the execution providers and session
options the job names (a provider that is not available fails the check
unless the job allows falling back), builds its feed (the golden inputs, or
zeros of the declared shapes when there are none), then runs the
:data:`STEPS` in order, each adding its measurements to one JSON object::

    STEPS = (_golden_outputs, _node_providers, _latency, _evaluate, _shadow)
    # a new kind of check is one more step

``_golden_outputs`` runs the feed once (the untimed warm-up) and compares
every golden output with numpy ``allclose`` semantics; ``_node_providers``
reads which provider ran which nodes from ONNX Runtime's profile of that
run (profiling is on only when more than one provider is in the session);
``_latency`` times ``runs`` inferences; ``_evaluate`` streams the
evaluation set through the model a batch at a time into the metric tally;
``_shadow`` loads the running release's model beside it and runs both on the
device's own samples (``shadow_run.py``).
Policy (budgets, thresholds, wording of reasons, what is enforced where)
lives in the parent; this side only measures, and refuses data it cannot
measure against: golden outputs that hold no array or name what the model
does not output, an evaluation set that does not fit the model (the
bundler refuses all of them at build, exit 2). A check that fails still
reports what it measured before (the provider report).

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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


def _sibling(name: str) -> ModuleType:
    """One of our pure-numpy modules beside this file, by absolute path (see the docstring)."""
    path = Path(__file__).resolve().with_name(f"{name}.py")
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


def _open_session(job: dict[str, Any], out: dict[str, Any], profile_dir: str | None) -> Any:
    """The session on the job's providers; ``out["providers"]``: what was asked, available, used.

    A provider not available here fails the check unless ``provider_fallback``;
    with it, the missing ones are left out and the report says so. ONNX
    Runtime may also drop a provider it lists but cannot start (a GPU
    provider without its libraries): the session's own list tells.
    """
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    wanted = list(job["providers"])
    fallback = bool(job.get("provider_fallback"))
    missing = [p for p in wanted if p not in available]
    report: dict[str, Any] = {"requested": wanted, "source": job.get("providers_from"),
                              "fallback_allowed": fallback, "available": available,
                              "missing": missing, "session": None, "nodes": None}
    out["providers"] = report
    if missing and not fallback:
        raise _Fail(f"execution provider {', '.join(missing)} is not available on this device "
                    f"(available: {', '.join(available)}); install it, or allow "
                    "provider_fallback to check on the others")
    usable = [p for p in wanted if p in available]
    if not usable:
        raise _Fail(f"none of the providers {', '.join(wanted)} is available here "
                    f"(available: {', '.join(available)})")
    profile = profile_dir if len(usable) > 1 and profile_dir is not None else None
    model = os.path.abspath(job["model"])
    skeleton = _sibling("model_skeleton").model_skeleton(model)
    session = None
    if skeleton is not None:
        opts = _session_options(ort, job.get("session") or {}, profile)
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                      os.path.dirname(model))
        try:
            session = ort.InferenceSession(skeleton, sess_options=opts, providers=usable)
        except Exception:  # an ONNX Runtime without that setting: the file, as before
            session = None
        del skeleton
    if session is None:
        opts = _session_options(ort, job.get("session") or {}, profile)
        try:
            session = ort.InferenceSession(model, sess_options=opts, providers=usable)
        except Exception as e:  # ORT raises its own (non-Exception-subclass-specific) types
            raise _Fail(f"ONNX Runtime cannot load the model: {_first_line(e)}") from e
    report["session"] = session.get_providers()
    dropped = [p for p in usable if p not in report["session"]]
    if dropped and not fallback:
        raise _Fail(f"execution provider {', '.join(dropped)} could not be started (ONNX Runtime "
                    f"fell back to {', '.join(report['session'])}); allow provider_fallback to "
                    "accept that")
    report["missing"] = missing + dropped
    if report["missing"]:
        out["notes"].append(f"fell back: {', '.join(report['missing'])} not available, ran on "
                            f"{', '.join(report['session'])}")
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


def _node_providers(run: _Run) -> None:
    """Which provider ran which nodes of the warm-up run: ONNX Runtime's profile, when it was on.

    With one provider in the session every node ran on it; profiling (on only
    with more than one) is ended here, so the timed runs are not profiled.
    """
    report = run.out["providers"]
    if run.session.get_session_options().enable_profiling:
        report["nodes"] = _profiled_nodes(run.session, int(run.job["max_profile_bytes"]))
    else:
        report["nodes"] = {report["session"][0]: "all"}


def _profiled_nodes(session: Any, limit: int) -> dict[str, int] | None:
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


def _evaluate(run: _Run) -> None:
    """Stream the evaluation set through the model ``batch`` rows at a time into the tally."""
    ev = run.job.get("evaluate")
    if not ev:
        return
    session = run.session
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    evaluation = _sibling("evaluation")
    npz = _sibling("npz_batches")
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
    run.out["evaluation"] = result


def _metric(v: Any) -> float | None:
    """A metric as JSON carries it: NaN and infinities (no value) become null."""
    if v is None:
        return None
    f = float(v)
    return f if f == f and abs(f) != float("inf") else None


def _shadow(run: _Run) -> None:
    """Run the device's samples through the running model and this one (``shadow_run``)."""
    sh = run.job.get("shadow")
    if not sh:
        return
    running = _open_session({**run.job, "model": sh["running_model"]}, {"notes": []}, None)
    compare = _sibling("shadow_run")
    dtypes = {}
    for i in run.session.get_inputs():
        with contextlib.suppress(_Fail):
            dtypes[i.name] = _numpy_dtype(i.type)
    try:
        run.out["shadow"] = compare.compare(
            run.session, running, list(sh["files"]), samples=int(sh["samples"]),
            compare_mode=sh["compare"], atol=float(sh["atol"]), rtol=float(sh["rtol"]),
            dtypes=dtypes, max_file_bytes=int(sh["max_file_bytes"]),
            max_named=int(sh["max_named"]), outputs_to=sh.get("outputs_to"))
    except compare.ShadowDataError as e:
        raise _Fail(f"shadow check: {e}") from e


#: The checks, in order, after the model is loaded and its feed built. A step
#: that finds the model wrong raises _Fail; otherwise it adds measurements.
STEPS: tuple[Callable[[_Run], None], ...] = (_golden_outputs, _node_providers, _latency,
                                             _evaluate, _shadow)


def _check(job: dict[str, Any], out: dict[str, Any]) -> None:
    """Run the check into ``out``; what it holds when a step fails is reported with the failure."""
    # Imported first so that runtime_rss_mb is the runtime's own weight, before the model.
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401

    out.update(runtime_rss_mb=_hwm_mb(), notes=[])
    profile_dir = tempfile.mkdtemp(prefix="airlock-health-")
    try:
        session = _open_session(job, out, profile_dir)
        run = _Run(session, _feed(session, job, out), job, out)
        for step in STEPS:
            step(run)
    finally:
        shutil.rmtree(profile_dir, ignore_errors=True)
    out["peak_rss_mb"] = _hwm_mb()


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
    result: dict[str, Any] = {}
    try:
        _check(job, result)
    except _Fail as e:
        result.update(error=str(e), peak_rss_mb=_hwm_mb())
    except Exception as e:  # anything else is still a failed check, worded by the parent
        result.update(error=f"{type(e).__name__}: {_first_line(e)}", peak_rss_mb=_hwm_mb())
    result_out.write(RESULT_MARKER + json.dumps(result) + "\n")
    result_out.flush()


if __name__ == "__main__":
    main()
