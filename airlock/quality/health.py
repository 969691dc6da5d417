"""Model health checks, one implementation for both sides: does a model load, answer right, fast and lean?

The agent checks a staged release before it switches to it (``agent.release_health``
finds the files under the release directory); the bundler checks the spec's
files before it signs (``bundler.build.host_check``). Both call :func:`check_model`,
one model per isolated child process::

    files = ModelFiles(model=mdir / "detector.onnx", inputs=mdir / "inputs.npz",
                       outputs=mdir / "outputs.npz")
    result = check_model("detector", files, entry.health, cwd=release_dir,
                         evaluation=entry.evaluation)      # None: no labelled set
    report = HealthReport.of([result])
    if not report.ok:
        raise HealthCheckError(report.reason)   # "health check of model 'detector' failed: ..."

ONNX Runtime reads external data relative to the model file and refuses
locations that leave its directory (``..``, absolute paths, symbolic links
out), so a model only ever loads data from the directory it sits in: its
data files (``ModelFiles.data``) must be beside it.

What a check does, with the model's budgets (any object with the fields of
:class:`Budgets`, such as ``keys.release.HealthSpec``):

1. load the model with ONNX Runtime, with the execution providers and
   session options the application uses (:class:`Runtime`: the budgets' own,
   CPU by default; a device's ``runtime`` argument, ``agent.runtime``; the
   ``providers`` argument over both); a provider that is not available fails
   the check unless fallback is allowed, and the result says which providers
   ran which nodes (``ModelResult.providers``);
2. run the golden inputs and compare every golden output with numpy
   ``allclose`` semantics (``|got - expected| <= atol + rtol * |expected|``),
   naming the worst element; without golden data, run zeros of the declared
   input shapes (dynamic dims -> 1) and say so in the result. Golden outputs
   that hold no array, or name anything the model does not output, fail the
   check: a check that compares nothing must not pass;
3. time ``runs`` inferences and compare their p95 with ``max_p95_ms``;
4. stream the evaluation set (``evaluation``, ``ModelFiles.eval_data`` and
   ``eval_labels``) through the model a batch at a time and judge its
   metrics against the thresholds (:mod:`airlock.quality.evaluation`); relative
   ones (``min_delta``) against ``baseline``, the running release's result
   on the same set, when there is one, and otherwise say why not;
5. compare the child's peak RSS with ``max_memory_mb`` (or a hard cap): the
   evaluation runs in the same child, under the same budget and timeout.

The child measures (its ``STEPS``); this side judges, through :data:`JUDGES`,
a list of functions from the child's measurements to findings. A finding is
either about the model (wrong outputs, a metric below its threshold: always
a failure), about the target hardware (latency, memory, an execution
provider the application needs): those fail the check where
``enforce_budgets`` (the device; ``airlock build --enforce-budgets``) and are
otherwise reported in ``over_budget`` (the host, whose hardware differs; its
child falls back to the providers it has), or a note (a relative threshold
with nothing to compare with). A new kind of check is one step in the child
and one judge here.

Isolation: each model is checked by ``python -I /path/to/airlock/_health_child.py``
(isolated mode, by absolute path) in a new session (its own process group),
not by multiprocessing: nothing of the caller's state is pickled or inherited,
the child's only output channel is a clean JSON document on its stdout, and
the group can be killed as a whole. It runs in the caller's fixed ``cwd``
(the release directory on a device, an empty temporary directory on the
host) with the allowlisted environment of :mod:`airlock.spawn`, so neither
the caller's directory (a ``json.py`` beside the bundle on a USB stick) nor
its ``PYTHONPATH``, ``PYTHONSTARTUP`` or ``LD_PRELOAD`` reaches it; numpy and
ONNX Runtime come from the interpreter's own site-packages.
The parent polls the child every few milliseconds and kills the group when it
passes its wall-clock ``timeout_s`` (measured from spawn, interpreter start-up
included) or its memory budget (``max_memory_mb`` where budgets are enforced,
else the hard cap). Peak RSS is the kernel's high-water mark (``VmHWM``, read
while the child runs and reported by the child at its end), so a spike
between two polls still counts. A child that times out, crashes, is killed
or prints no result is a failed check with a one-line reason; no exception
leaves :func:`check_model` for anything a model can do.

Test-only fault: with ``AIRLOCK_TEST_FAULT=health-crash`` in the environment
the child kills itself with SIGSEGV right after loading the model. Never set
it on a device.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from airlock.limits import (
    MAX_DETAILED_CLASSES,
    MAX_EVAL_BATCH_BYTES,
    MAX_EVAL_CLASSES,
    MAX_EVAL_SAMPLES,
    MAX_PROFILE_BYTES,
    MAX_TOP_K,
)
from airlock.quality.evaluation import Threshold, judge
from airlock.quality.health_process import (
    WATCHDOG_GRACE_S,
    ChildRun,
    memory_budget,
    run_child,
    signal_name,
)
from airlock.quality.shadow_check import ShadowAsk, shadow_job, shadow_verdict

__all__ = [
    "JUDGES",
    "Baseline",
    "Budgets",
    "Evaluation",
    "Finding",
    "HealthReport",
    "ModelFiles",
    "ModelResult",
    "Runtime",
    "check_model",
]

class _JsonOptions(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class Budgets(Protocol):
    """What a check needs to know of a model's health spec (``keys.release.HealthSpec`` has it)."""

    @property
    def rtol(self) -> float: ...
    @property
    def atol(self) -> float: ...
    @property
    def runs(self) -> int: ...
    @property
    def max_p95_ms(self) -> float | None: ...
    @property
    def max_memory_mb(self) -> float | None: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def providers(self) -> tuple[str, ...]: ...
    @property
    def provider_fallback(self) -> bool: ...
    @property
    def session(self) -> _JsonOptions: ...


class Evaluation(Protocol):
    """A labelled set and its thresholds (``keys.release.EvaluationSpec`` has it)."""

    @property
    def data(self) -> str: ...  # digests of the set and its labels: what a baseline must match
    @property
    def labels(self) -> str: ...
    @property
    def metrics(self) -> tuple[Threshold, ...]: ...
    @property
    def batch(self) -> int: ...
    @property
    def max_samples(self) -> int | None: ...


@dataclass(frozen=True)
class Runtime:
    """The ONNX Runtime setup a check runs with: the application's, so the check sees what it will."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    #: False: every provider must be usable, or the check fails (on the host: is over budget).
    provider_fallback: bool = False
    session: Mapping[str, Any] = field(default_factory=dict)  # keys.release.SessionOptions JSON
    source: str = "release"  # where the providers came from: "release", "device" or "caller"

    @classmethod
    def of(cls, budgets: Budgets) -> Runtime:
        """The release's own setup for a model."""
        return cls(tuple(budgets.providers) or ("CPUExecutionProvider",),
                   budgets.provider_fallback, budgets.session.to_json())


@dataclass(frozen=True)
class Baseline:
    """A model's recorded evaluation in the release being replaced: what ``min_delta`` compares with."""

    release: str
    data: str  # digests of the set and labels it was measured on
    labels: str
    samples: int
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelFiles:
    """The files one check reads: the model, its external data beside it, its golden data,
    its evaluation set and labels."""

    model: Path
    inputs: Path | None = None
    outputs: Path | None = None
    data: tuple[Path, ...] = ()
    eval_data: Path | None = None
    eval_labels: Path | None = None


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
    over_budget: str | None = None  # budgets missed but not enforced here (the host)
    seconds: float | None = None  # the whole check, spawn to verdict
    providers: dict[str, Any] | None = None  # requested, available, used, nodes per provider
    evaluation: dict[str, Any] | None = None  # metrics, threshold checks, baseline used
    shadow: dict[str, Any] | None = None  # agreement with the running model on device samples

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthReport:
    ok: bool
    models: list[ModelResult] = field(default_factory=list)

    @classmethod
    def of(cls, models: list[ModelResult]) -> HealthReport:
        return cls(ok=all(m.ok for m in models), models=models)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "models": [m.to_dict() for m in self.models]}

    @property
    def reason(self) -> str | None:
        for m in self.models:
            if not m.ok:
                return f"health check of model '{m.name}' failed: {m.reason}"
        return None


@dataclass(frozen=True)
class Finding:
    """One thing a judge found wrong; ``budget`` findings are enforced only where asked.

    A ``note`` is said in the result's note and fails nothing.
    """

    text: str
    budget: bool = False
    note: bool = False


@dataclass(frozen=True)
class _Measured:
    """What a judge reads: the child's result, what the parent saw of it, what it was asked.

    ``evaluation`` is the record of the child's evaluation that the metrics
    judge completes (its checks, the baseline it used) for the result.
    """

    result: Mapping[str, Any]
    peak_mb: float | None
    memory_budget_mb: float
    memory_budget_text: str
    runtime: Runtime
    plan: Evaluation | None = None
    baseline: Baseline | None = None
    no_baseline: str = ""
    evaluation: dict[str, Any] | None = None
    shadow: ShadowAsk | None = None


Judge = Callable[[_Measured, Budgets], list[Finding]]


@dataclass(frozen=True)
class _Asked:
    """What one check was asked beyond the files and budgets."""

    runtime: Runtime
    enforce_budgets: bool
    evaluation: Evaluation | None
    baseline: Baseline | None
    no_baseline: str
    shadow: ShadowAsk | None = None


def check_model(name: str, files: ModelFiles, budgets: Budgets, *, cwd: Path,
                providers: Sequence[str] | None = None, runtime: Runtime | None = None,
                enforce_budgets: bool = True, evaluation: Evaluation | None = None,
                baseline: Baseline | None = None,
                no_baseline: str = "no release is running to compare with",
                shadow: ShadowAsk | None = None) -> ModelResult:
    """Check one model in its own child process, run in ``cwd``; never raises for the model's sake.

    ``runtime`` is the ONNX Runtime setup (the budgets' own by default),
    ``providers`` overrides its providers; ``evaluation`` the model's
    labelled set (its files in ``files``), ``baseline`` the running
    release's recorded result for relative thresholds (``no_baseline``
    says why there is none); ``shadow`` the comparison with the running
    model on the device's samples (``airlock.quality.shadow_check``), in the same child.
    """
    start = time.monotonic()
    chosen = runtime or Runtime.of(budgets)
    if providers:
        chosen = replace(chosen, providers=tuple(providers), source="caller")
    asked = _Asked(chosen, enforce_budgets, evaluation, baseline, no_baseline, shadow)
    try:
        result = _check_model(name, files, budgets, Path(cwd).absolute(), asked)
    except Exception as e:  # cannot fork, /tmp full...: a failed check, not a dead caller
        result = ModelResult(name, False, f"check could not run: {e}", None, None, None)
    result.seconds = round(time.monotonic() - start, 3)
    return result


def _check_model(name: str, files: ModelFiles, spec: Budgets, cwd: Path,
                 asked: _Asked) -> ModelResult:
    """The check's steps: files present, the child run, how it ended, the judges' verdict."""
    missing = _missing_file(files, cwd, asked.evaluation is not None)
    if missing is not None:
        return _failed(name, missing)
    budget, budget_text = memory_budget(spec, asked.enforce_budgets)
    run = run_child(_job(files, spec, asked), cwd, spec.timeout_s, budget)
    ended = _how_it_ended(run, spec, budget_text)
    if ended is not None:
        return _failed(name, ended, peak_rss_mb=run.peak_mb)
    assert run.result is not None
    return _judged(name, run.result, run.peak_mb, spec, asked, budget, budget_text)


def _failed(name: str, reason: str, **kw: Any) -> ModelResult:
    return ModelResult(name, False, reason, kw.pop("p95_ms", None),
                       kw.pop("peak_rss_mb", None), kw.pop("worst", None), **kw)


def _missing_file(files: ModelFiles, cwd: Path, evaluated: bool) -> str | None:
    """Why the check cannot start (a file it needs is missing), or None."""
    for kind, path in (("golden inputs", files.inputs), ("golden outputs", files.outputs)):
        if path is not None and not path.is_file():
            return f"{kind} file {_rel(path, cwd)} is missing"
    if not files.model.is_file():
        return f"model file {_rel(files.model, cwd)} is missing"
    for data in files.data:
        if not data.is_file():
            return f"external data file {_rel(data, cwd)} is missing"
    if evaluated:
        for path in (files.eval_data, files.eval_labels):
            if path is None or not path.is_file():
                what = _rel(path, cwd) if path is not None else "not given"
                return f"evaluation file {what} is missing"
    return None


def _job(files: ModelFiles, spec: Budgets, asked: _Asked) -> dict[str, Any]:
    """The child's job: what to load, compare, time and evaluate, under which runtime."""
    evaluate = None
    if asked.evaluation is not None:
        assert files.eval_data is not None and files.eval_labels is not None
        ev = asked.evaluation
        evaluate = {
            "data": str(files.eval_data.absolute()), "labels": str(files.eval_labels.absolute()),
            "batch": ev.batch, "max_samples": ev.max_samples or MAX_EVAL_SAMPLES,
            "metrics": [t.metric for t in ev.metrics], "max_k": MAX_TOP_K,
            "max_classes": MAX_EVAL_CLASSES, "detailed_classes": MAX_DETAILED_CLASSES,
            "max_batch_bytes": MAX_EVAL_BATCH_BYTES,
        }
    rt = asked.runtime
    return {
        "model": str(files.model.absolute()),
        "inputs": str(files.inputs.absolute()) if files.inputs else None,
        "outputs": str(files.outputs.absolute()) if files.outputs else None,
        "rtol": spec.rtol,
        "atol": spec.atol,
        "runs": spec.runs,
        "providers": list(rt.providers),
        "providers_from": rt.source,
        # Where budgets are not enforced (the host), the child runs on the providers it has
        # and the _providers judge reports the missing ones.
        "provider_fallback": rt.provider_fallback or not asked.enforce_budgets,
        "session": dict(rt.session),
        "max_profile_bytes": MAX_PROFILE_BYTES,
        "evaluate": evaluate,
        "shadow": shadow_job(asked.shadow) if asked.shadow is not None else None,
        "watchdog_s": spec.timeout_s + WATCHDOG_GRACE_S,
    }


def _how_it_ended(run: ChildRun, spec: Budgets, budget_text: str) -> str | None:
    """Why the child gave no result (killed, crashed, silent), or None when it gave one."""
    if run.memory_killed:
        return f"used {run.peak_mb:.0f} MiB > {budget_text} (killed)"
    if run.timed_out:
        return f"timed out after {spec.timeout_s:g} s (killed)"
    if run.returncode < 0:
        return f"killed by signal {signal_name(-run.returncode)}{run.stderr_hint()}"
    if run.result is None:
        what = f"exited with status {run.returncode}" if run.returncode else "printed no result"
        return f"{what}{run.stderr_hint()}"
    return None


def _judged(name: str, r: dict[str, Any], peak_mb: float | None, spec: Budgets, asked: _Asked,
            budget: float, budget_text: str) -> ModelResult:
    """The child's result through :data:`JUDGES`: failures, unenforced budgets, notes."""
    notes = [str(n) for n in r.get("notes") or []]
    providers = r.get("providers") if isinstance(r.get("providers"), dict) else None
    common: dict[str, Any] = {"peak_rss_mb": peak_mb,
                              "runtime_rss_mb": r.get("runtime_rss_mb"), "providers": providers}
    if "error" in r:
        return _failed(name, str(r["error"]), note="; ".join(notes) or None, **common)

    evaluation = r.get("evaluation")
    measured = _Measured(r, peak_mb, budget, budget_text, asked.runtime, asked.evaluation,
                         asked.baseline, asked.no_baseline,
                         dict(evaluation) if isinstance(evaluation, dict) else None, asked.shadow)
    findings = [f for j in JUDGES for f in j(measured, spec)]
    enforce = asked.enforce_budgets
    problems = [f.text for f in findings if not f.note and (enforce or not f.budget)]
    unenforced = [f.text for f in findings if f.budget and not enforce]
    notes += [f.text for f in findings if f.note]
    worst = dict(r.get("outputs") or {}) or None
    shadow = dict(r["shadow"]) if isinstance(r.get("shadow"), dict) else None
    return ModelResult(name, not problems, "; ".join(problems) or None,
                       float(r["p95_ms"]), **common, worst=worst, note="; ".join(notes) or None,
                       over_budget="; ".join(unenforced) or None, evaluation=measured.evaluation,
                       shadow=shadow)


def _golden(m: _Measured, spec: Budgets) -> list[Finding]:
    return [Finding(_describe_mismatch(name, cmp, spec))
            for name, cmp in (m.result.get("outputs") or {}).items() if not cmp["ok"]]


def _latency(m: _Measured, spec: Budgets) -> list[Finding]:
    p95 = float(m.result["p95_ms"])
    if spec.max_p95_ms is not None and p95 > spec.max_p95_ms:
        return [Finding(f"p95 latency {p95:.3g} ms over {m.result['runs']} runs "
                        f"> max_p95_ms {spec.max_p95_ms:g}", budget=True)]
    return []


def _providers(m: _Measured, spec: Budgets) -> list[Finding]:
    """A provider the application needs that was not here: over budget where not enforced.

    (Where budgets are enforced the child itself fails on it, unless fallback is allowed.)
    """
    report = m.result.get("providers")
    if not isinstance(report, dict) or not report.get("missing") or m.runtime.provider_fallback:
        return []
    return [Finding(f"execution provider {', '.join(map(str, report['missing']))} is not "
                    f"available here (checked on {', '.join(map(str, report.get('session') or []))}"
                    "); the device must have it", budget=True)]


def _metrics(m: _Measured, spec: Budgets) -> list[Finding]:
    """The evaluation's metrics against the thresholds; records the checks in ``m.evaluation``."""
    plan = m.plan
    if plan is None:
        return []
    ev = m.evaluation
    if ev is None:
        return [Finding("the evaluation did not run")]
    samples = int(ev.get("samples") or 0)
    ev.update(data=plan.data, labels=plan.labels, baseline=None)
    why, base_metrics, base = m.no_baseline, None, m.baseline
    if base is not None:
        if (base.data, base.labels) != (plan.data, plan.labels):
            why = f"{base.release} was evaluated on another set"
        elif base.samples != samples:
            why = (f"{base.release} was evaluated on {base.samples} samples of this "
                   f"set, this release on {samples}")
        else:
            base_metrics = base.metrics
            ev["baseline"] = base.to_dict()
    checks = judge(plan.metrics, ev.get("metrics") or {}, baseline=base_metrics,
                   baseline_name=base.release if base else "the running release",
                   no_baseline=why)
    ev["checks"] = checks
    findings = [Finding(str(n), note=True) for n in ev.get("notes") or []]
    findings += [Finding(c["reason"], note=True) for c in checks if c["ok"] is None]
    failed = [c["reason"] for c in checks if c["ok"] is False]
    if failed:
        findings.append(Finding(f"{'; '.join(failed)} (on {samples} evaluation samples)"))
    return findings


def _memory(m: _Measured, spec: Budgets) -> list[Finding]:
    if spec.max_memory_mb is not None and m.peak_mb is not None and m.peak_mb > spec.max_memory_mb:
        return [Finding(f"used {m.peak_mb:.0f} MiB > max_memory_mb {spec.max_memory_mb:g}",
                        budget=True)]
    if m.peak_mb is not None and m.peak_mb > m.memory_budget_mb:  # the hard cap, reported late
        return [Finding(f"used {m.peak_mb:.0f} MiB > {m.memory_budget_text}")]
    return []


def _shadow(m: _Measured, spec: Budgets) -> list[Finding]:
    """Agreement and latency against the running model (``airlock.quality.shadow_check``)."""
    if m.shadow is None:
        return []
    facts = m.result.get("shadow")
    problems, notes = shadow_verdict(m.shadow, facts if isinstance(facts, dict) else None)
    return [Finding(t) for t in problems] + [Finding(t, note=True) for t in notes]


#: The judges, in the order their findings are worded; each reads the child's
#: measurements (its ``STEPS``) and the budgets.
JUDGES: tuple[Judge, ...] = (_golden, _providers, _latency, _metrics, _memory, _shadow)


def _describe_mismatch(name: str, cmp: dict[str, Any], spec: Budgets) -> str:
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


