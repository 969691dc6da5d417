"""Model health checks: does each model of a release load, answer right, fast and lean?

The agent runs :func:`check_release` on a staged release before it switches
to it (and again on ``check`` and ``rollback``). For every model of the
release, in its own child process::

    report = check_release(Path("ROOT/releases/vision-7"), release)
    if not report.ok:
        raise HealthCheckError(report.reason)   # "health check of model 'detector' failed: ..."
    journal(report.to_dict())

Files it reads (the agent hard-links them from its content store)::

    RELEASE_DIR/models/<model.name>/<model.file_name>   the ONNX model
    RELEASE_DIR/models/<model.name>/<data file>         its ONNX external data, if any
    RELEASE_DIR/models/<model.name>/inputs.npz          golden inputs, by input name
    RELEASE_DIR/models/<model.name>/outputs.npz         golden outputs, by output name
    RELEASE_DIR/models/<model.name>/eval_data.npz       evaluation set, one row per sample
    RELEASE_DIR/models/<model.name>/eval_labels.npz     its labels, named after the output scored

ONNX Runtime reads external data relative to the model file and refuses
locations that leave its directory (``..``, absolute paths, symbolic links
out), so a model only ever loads data from its own ``models/<name>/``.

What a check does, with budgets from the model's :class:`keys.release.HealthSpec`:

1. load the model with ONNX Runtime, with the execution providers and
   session options the application uses (the release's, CPU by default;
   the device's ``runtime`` from agent.yaml wins, the ``providers``
   argument over both, see ``agent.runtime``); a provider that is not
   available fails the check unless fallback is allowed, and the result
   says which providers ran;
2. run the golden inputs and compare every golden output with numpy
   ``allclose`` semantics (``|got - expected| <= atol + rtol * |expected|``),
   naming the worst element; without golden data, run zeros of the declared
   input shapes (dynamic dims -> 1) and say so in the result. Golden outputs
   that hold no array, or name anything the model does not output, fail the
   check: a check that compares nothing must not pass;
3. time ``runs`` inferences and compare their p95 with ``max_p95_ms``;
4. stream the evaluation set through the model a batch at a time and judge
   its metrics against the release's thresholds (``airlock.evaluation``);
   relative ones against ``baselines``, the running release's result on the
   same set, when there is one;
5. compare the child's peak RSS with ``max_memory_mb`` (or a hard cap): the
   evaluation runs in the same child, under the same budget and timeout.

Isolation: each model is checked by ``python -I /path/to/agent/_health_child.py``
(isolated mode, by absolute path) in a new session (its own process group),
not by multiprocessing: nothing of the agent's state is pickled or inherited,
the child's only output channel is a clean JSON document on its stdout, and
the group can be killed as a whole. It runs in the release directory with the
allowlisted environment of :mod:`airlock.spawn`, so neither the caller's
directory (a ``json.py`` beside the bundle on a USB stick) nor its
``PYTHONPATH``, ``PYTHONSTARTUP`` or ``LD_PRELOAD`` reaches it; numpy and
ONNX Runtime come from the interpreter's own site-packages.
The parent polls the child every few milliseconds and kills the group when it
passes its wall-clock ``timeout_s`` (measured from spawn, interpreter start-up
included) or its memory budget. Peak RSS is the kernel's high-water mark
(``VmHWM``, read while the child runs and reported by the child at its end),
so a spike between two polls still counts. A child that times out, crashes,
is killed or prints no result is a failed check with a one-line reason; no
exception leaves :func:`check_release` for anything a model can do.

Test-only fault: with ``AIRLOCK_TEST_FAULT=health-crash`` in the environment
the child kills itself with SIGSEGV right after loading the model. Never set
it on a device.
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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from agent import _health_child
from agent._health_child import RESULT_MARKER
from agent.runtime import DeviceRuntime
from airlock import evaluation as _evaluation
from airlock import npz_batches as _npz_batches
from airlock.evaluation import judge
from airlock.limits import (
    MAX_CHILD_OUTPUT_BYTES,
    MAX_DETAILED_CLASSES,
    MAX_EVAL_BATCH_BYTES,
    MAX_EVAL_CLASSES,
    MAX_EVAL_SAMPLES,
    MAX_PROFILE_BYTES,
    MAX_TOP_K,
)
from airlock.spawn import child_env, python_argv
from keys.release import HealthSpec, ModelEntry, Release
from keys.signed_fields import (
    EVAL_DATA_FILE,
    EVAL_LABELS_FILE,
    GOLDEN_INPUTS_FILE,
    GOLDEN_OUTPUTS_FILE,
)

__all__ = ["Baseline", "HealthReport", "ModelResult", "check_release"]

_MiB = 1024 * 1024
_POLL_S = 0.01
# A check without max_memory_mb may still not take the device down.
_CAP_FLOOR_MB = 256.0
_CAP_SHARE_OF_AVAILABLE = 0.75
# The child kills itself this long after its timeout if the agent is gone.
_WATCHDOG_GRACE_S = 10.0
# Run by path, not ``-m``: ``-I`` keeps every directory but the interpreter's
# own out of sys.path, so this file is the one that runs, and imports only
# the standard library, numpy and onnxruntime.
_CHILD_SCRIPT = Path(_health_child.__file__).resolve()
# The pure-numpy modules of the shared ground the child loads by absolute path.
_CHILD_MODULES = {"evaluation": str(Path(_evaluation.__file__).resolve()),
                  "npz_batches": str(Path(_npz_batches.__file__).resolve())}


@dataclass(frozen=True)
class Baseline:
    """A model's recorded evaluation in the release being replaced: what ``*_delta`` compares with."""

    release: str
    data: str  # digests of the set and labels it was measured on
    labels: str
    samples: int
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelResult:
    """The outcome of one model's check; ``reason`` is set whenever ``ok`` is false."""

    name: str
    ok: bool
    reason: str | None
    p95_ms: float | None
    peak_rss_mb: float | None
    worst: dict[str, Any] | None  # output name -> worst element (index, got, expected, ...)
    note: str | None = None  # what was not checked, e.g. no golden data
    runtime_rss_mb: float | None = None  # RSS of the child before loading the model
    providers: dict[str, Any] | None = None  # requested, available, used, nodes per provider
    evaluation: dict[str, Any] | None = None  # metrics, threshold checks, baseline used

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthReport:
    ok: bool
    models: list[ModelResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "models": [m.to_dict() for m in self.models]}

    @property
    def reason(self) -> str | None:
        for m in self.models:
            if not m.ok:
                return f"health check of model '{m.name}' failed: {m.reason}"
        return None


def check_release(release_dir: Path, release: Release, *,
                  providers: Sequence[str] | None = None, runtime: DeviceRuntime | None = None,
                  baselines: Mapping[str, Baseline] | None = None,
                  no_baseline: str = "no release is running to compare with") -> HealthReport:
    """Check every model of ``release`` as installed under ``release_dir``, one child each.

    ``runtime`` is the device's ONNX Runtime setup; ``baselines`` the
    recorded evaluation per model of the release being replaced
    (``no_baseline`` says why there is none, for relative thresholds).
    """
    results = []
    release_dir = Path(release_dir).absolute()  # the child runs in it: its paths must not be relative
    for model in release.models:
        try:
            results.append(_check_model(release_dir, model, providers, runtime or DeviceRuntime(),
                                        (baselines or {}).get(model.name), no_baseline))
        except Exception as e:  # cannot fork, /tmp full...: a failed check, not a dead agent
            results.append(ModelResult(model.name, False, f"check could not run: {e}",
                                       None, None, None))
    return HealthReport(ok=all(r.ok for r in results), models=results)


def _check_model(release_dir: Path, model: ModelEntry, providers: Sequence[str] | None,
                 runtime: DeviceRuntime, baseline: Baseline | None,
                 no_baseline: str) -> ModelResult:
    spec = model.health
    mdir = release_dir / "models" / model.name

    def failed(reason: str, **kw: Any) -> ModelResult:
        return ModelResult(model.name, False, reason, kw.pop("p95_ms", None),
                           kw.pop("peak_rss_mb", None), kw.pop("worst", None), **kw)

    model_path = mdir / model.file_name
    golden: dict[str, str | None] = {"inputs": None, "outputs": None}
    for kind, file_name, digest in (("inputs", GOLDEN_INPUTS_FILE, spec.inputs),
                                    ("outputs", GOLDEN_OUTPUTS_FILE, spec.outputs)):
        path = mdir / file_name
        if digest is not None:
            if not path.is_file():
                return failed(f"golden {kind} file {_rel(path, release_dir)} is missing")
            golden[kind] = str(path)
    if not model_path.is_file():
        return failed(f"model file {_rel(model_path, release_dir)} is missing")
    for data_name, _ in model.data:
        if not (mdir / data_name).is_file():
            return failed(f"external data file {_rel(mdir / data_name, release_dir)} is missing")
    evaluate = None
    if model.evaluation is not None:
        for file_name in (EVAL_DATA_FILE, EVAL_LABELS_FILE):
            if not (mdir / file_name).is_file():
                return failed(f"evaluation file {_rel(mdir / file_name, release_dir)} is missing")
        ev = model.evaluation
        evaluate = {
            "data": str(mdir / EVAL_DATA_FILE), "labels": str(mdir / EVAL_LABELS_FILE),
            "batch": ev.batch, "max_samples": ev.max_samples or MAX_EVAL_SAMPLES,
            "metrics": [t.metric for t in ev.metrics], "max_k": MAX_TOP_K,
            "max_classes": MAX_EVAL_CLASSES, "detailed_classes": MAX_DETAILED_CLASSES,
            "max_batch_bytes": MAX_EVAL_BATCH_BYTES, "modules": _CHILD_MODULES,
        }

    budget, budget_text = _memory_budget(spec)
    choice = runtime.choose(spec, tuple(providers) if providers else None)
    job = {
        "model": str(model_path),
        **golden,
        "rtol": spec.rtol,
        "atol": spec.atol,
        "runs": spec.runs,
        "providers": list(choice.providers),
        "providers_from": choice.source,
        "provider_fallback": choice.provider_fallback,
        "session": choice.session.to_json(),
        "max_profile_bytes": MAX_PROFILE_BYTES,
        "evaluate": evaluate,
        "watchdog_s": spec.timeout_s + _WATCHDOG_GRACE_S,
    }
    run = _run_child(job, release_dir, spec.timeout_s, budget)
    over_memory = (f"used {run.peak_mb:.0f} MB > {budget_text}"
                   if run.peak_mb is not None and run.peak_mb > budget else None)

    if run.memory_killed:
        return failed(f"{over_memory} (killed)", peak_rss_mb=run.peak_mb)
    if run.timed_out:
        return failed(f"timed out after {spec.timeout_s:g} s (killed)", peak_rss_mb=run.peak_mb)
    if run.returncode < 0:
        sig = _signal_name(-run.returncode)
        return failed(f"killed by signal {sig}{run.stderr_hint()}", peak_rss_mb=run.peak_mb)
    if run.result is None:
        what = f"exited with status {run.returncode}" if run.returncode else "printed no result"
        return failed(f"{what}{run.stderr_hint()}", peak_rss_mb=run.peak_mb)

    r = run.result
    notes = list(r.get("notes") or [])
    common: dict[str, Any] = {"peak_rss_mb": run.peak_mb, "runtime_rss_mb": r.get("runtime_rss_mb"),
                              "providers": r.get("providers")}
    if "error" in r:
        return failed(str(r["error"]), note="; ".join(notes) or None, **common)

    problems: list[str] = []
    worst: dict[str, Any] = {}
    for name, cmp in r.get("outputs", {}).items():
        worst[name] = cmp
        if not cmp["ok"]:
            problems.append(_describe_mismatch(name, cmp, spec))
    p95 = float(r["p95_ms"])
    if spec.max_p95_ms is not None and p95 > spec.max_p95_ms:
        problems.append(f"p95 latency {p95:.3g} ms over {r['runs']} runs "
                        f"> max_p95_ms {spec.max_p95_ms:g}")
    evaluation = None
    if model.evaluation is not None:
        evaluation = r.get("evaluation")
        if not isinstance(evaluation, dict):
            problems.append("the evaluation did not run")
        else:
            problems += _judge(model, evaluation, baseline, no_baseline, notes)
    if over_memory:
        problems.append(over_memory)
    return ModelResult(model.name, not problems, "; ".join(problems) or None, p95,
                       **common, worst=worst or None, note="; ".join(notes) or None,
                       evaluation=evaluation)


def _judge(model: ModelEntry, evaluation: dict[str, Any], baseline: Baseline | None,
           no_baseline: str, notes: list[str]) -> list[str]:
    """Judge the child's metrics by the release's thresholds; record what was compared."""
    ev = model.evaluation
    assert ev is not None
    samples = int(evaluation.get("samples") or 0)
    evaluation.update(data=ev.data, labels=ev.labels, baseline=None)
    why = no_baseline
    base_metrics = None
    if baseline is not None:
        if (baseline.data, baseline.labels) != (ev.data, ev.labels):
            why = f"{baseline.release} was evaluated on another set"
        elif baseline.samples != samples:
            why = (f"{baseline.release} was evaluated on {baseline.samples} samples of this "
                   f"set, this release on {samples}")
        else:
            base_metrics = baseline.metrics
            evaluation["baseline"] = baseline.to_dict()
    checks = judge(ev.metrics, evaluation.get("metrics") or {}, baseline=base_metrics,
                   baseline_name=baseline.release if baseline else "the running release",
                   no_baseline=why)
    evaluation["checks"] = checks
    notes.extend(str(n) for n in evaluation.get("notes") or [])
    notes.extend(c["reason"] for c in checks if c["ok"] is None)
    failed = [c["reason"] for c in checks if c["ok"] is False]
    return [f"{'; '.join(failed)} (on {samples} evaluation samples)"] if failed else []


def _describe_mismatch(name: str, cmp: dict[str, Any], spec: HealthSpec) -> str:
    if "expected_shape" in cmp:
        return f"output '{name}' has shape {cmp['shape']}, golden shape {cmp['expected_shape']}"
    if cmp.get("abs_err") is None:  # non-numeric output, compared for equality
        return (f"output '{name}' differs: first different element {cmp['index']} "
                f"got {cmp['got']!r} expected {cmp['expected']!r}")
    return (f"output '{name}' differs: worst element {cmp['index']} got {_g(cmp['got'])} "
            f"expected {_g(cmp['expected'])} (abs err {_g(cmp['abs_err'])} > atol {spec.atol:g} "
            f"+ rtol*|expected| = {_g(cmp['tol'])}, rtol {spec.rtol:g})")


def _g(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float | int) else str(v)


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _memory_budget(spec: HealthSpec) -> tuple[float, str]:
    if spec.max_memory_mb is not None:
        return float(spec.max_memory_mb), f"max_memory_mb {spec.max_memory_mb:g}"
    available = psutil.virtual_memory().available / _MiB
    cap = max(_CAP_FLOOR_MB, round(available * _CAP_SHARE_OF_AVAILABLE))
    return cap, (f"hard cap {cap:g} MB (no max_memory_mb set: "
                 f"{_CAP_SHARE_OF_AVAILABLE:.0%} of available memory)")


@dataclass
class _ChildRun:
    returncode: int
    result: dict[str, Any] | None
    peak_mb: float | None
    timed_out: bool
    memory_killed: bool
    stderr_tail: str

    def stderr_hint(self) -> str:
        return f" (stderr: {self.stderr_tail})" if self.stderr_tail else ""


def _run_child(job: dict[str, Any], cwd: Path, timeout_s: float,
               budget_mb: float) -> _ChildRun:
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
        return _ChildRun(returncode, result, peak, timed_out, memory_killed, _tail(err))


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
