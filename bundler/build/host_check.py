"""The device's health check, run on the host before signing: a bad model never leaves the desk.

``airlock build`` (and ``airlock check``) hands every model it assembled to
the one check devices run (:mod:`airlock.quality.health`: the same child process
with its time and memory limits, the same golden comparison, the same
report), before anything is signed::

    report = check_models(contents, models, enforce_budgets=False)
    if not report.ok:
        raise HealthCheckError(report.reason)   # exit 4: "health check of model 'detector'
                                                # failed: output 'y' differs: worst element ..."
    report.models[0].over_budget                 # "p95 latency 21 ms over 20 runs > max_p95_ms 15"

What a model answers is checked as on a device: a model that does not load,
golden outputs it misses, a crash or a hang fail the check, and so does a
model with an evaluation set (``evaluate:``) that misses an absolute metric
threshold: the set is streamed through it in the same child, batch by batch,
and judged as a device judges it. A relative threshold (``min_delta``) needs
the release a device runs, which the host does not know: it is not applied
here, and the result's note says so. Latency and memory budgets, and the
execution providers the application needs, belong to the device's hardware,
not the host's: they are measured and reported (``over_budget``; a provider
the host lacks is left out and the check runs on the others) but fail the
check only with ``enforce_budgets`` (``--enforce-budgets``). A model's
*variant* (``keys.variants``) built for a provider the host lacks (a CUDA
or TensorRT build on a desk without a GPU) is skipped, ``ok`` with a note
that says which provider is missing: the device that picks it checks it.

Files are checked where they are: a local model beside its external data
files (the build found them there), golden data and evaluation sets by path. A model pulled from
a registry sits in the pull cache under its digest, so its file and its
external data are hard-linked under their signed names into a temporary
directory beside the cached blob (the same filesystem; copied when a link is
refused), which is removed afterwards. Each child runs in an empty temporary
directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from airlock.console import Progress, no_progress
from airlock.quality.health import HealthReport, ModelFiles, ModelResult, check_model
from bundler.build.artifacts import LayoutBuilder
from keys.release import ModelEntry

__all__ = ["check_models", "host_providers"]

_PHASE = "health check"
_NO_BASELINE = "the host knows no running release to compare with (a device applies it)"


def check_models(contents: LayoutBuilder, models: list[ModelEntry], *,
                 enforce_budgets: bool = False, progress: Progress = no_progress) -> HealthReport:
    """Check each model of ``models`` from the files ``contents`` was assembled from."""
    total = sum(m.size for m in models)
    results: list[ModelResult] = []
    host = host_providers() if any(m.variant is not None for m in models) else ()
    with tempfile.TemporaryDirectory(prefix="airlock-check-") as cwd:
        for m in models:
            lacking = [p for p in m.health.providers if p not in host] if m.variant else []
            if lacking:  # a variant for other hardware: its device checks it, not this desk
                results.append(ModelResult(
                    m.label, True, None, None, None, None,
                    note=f"skipped: needs {', '.join(lacking)}, which this host lacks "
                         f"(host has {', '.join(host) or 'no ONNX Runtime'}); the device "
                         "that picks this variant health-checks it before switching",
                    providers={"requested": list(m.health.providers),
                               "available": list(host), "skipped": True}))
                progress(_PHASE, m.size, total)
                continue
            with _files(contents, m) as files:
                results.append(check_model(m.label, files, m.health, cwd=Path(cwd),
                                           enforce_budgets=enforce_budgets,
                                           evaluation=m.evaluation, no_baseline=_NO_BASELINE))
            progress(_PHASE, m.size, total)
    return HealthReport.of(results)


def host_providers() -> tuple[str, ...]:
    """The execution providers ONNX Runtime really has on this host, asked in a child (a
    provider library that fails to load must not take the bundler down); () without it."""
    import json
    import subprocess
    import sys

    code = "import json, onnxruntime as o; print(json.dumps(o.get_available_providers()))"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, check=False)
        found = json.loads(done.stdout) if done.returncode == 0 else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return ()
    return tuple(str(p) for p in found) if isinstance(found, list) else ()


@contextlib.contextmanager
def _files(contents: LayoutBuilder, m: ModelEntry) -> Iterator[ModelFiles]:
    model = contents.paths[m.blob]
    golden = {d: contents.paths[d] for d in (m.health.inputs, m.health.outputs) if d is not None}
    data = [(name, contents.paths[digest]) for name, digest in m.data]
    ev = m.evaluation
    files = ModelFiles(
        model=model,
        inputs=golden.get(m.health.inputs) if m.health.inputs else None,
        outputs=golden.get(m.health.outputs) if m.health.outputs else None,
        data=tuple(path for _, path in data),
        eval_data=contents.paths[ev.data] if ev else None,
        eval_labels=contents.paths[ev.labels] if ev else None,
    )
    in_place = model.name == m.file_name and all(
        path == model.parent / name for name, path in data)
    if in_place:  # a local model: its data files are beside it, under the names it uses
        yield files
        return
    with _linked_dir(model.parent) as mdir:
        for name, source in [(m.file_name, model), *data]:
            _link(source, mdir / name)
        yield dataclasses.replace(files, model=mdir / m.file_name,
                                  data=tuple(mdir / name for name, _ in data))


@contextlib.contextmanager
def _linked_dir(near: Path) -> Iterator[Path]:
    """A temporary directory on the filesystem of ``near`` if it is writable, else in TMPDIR."""
    try:
        mdir = tempfile.mkdtemp(prefix=".airlock-check-", dir=near)
    except OSError:
        mdir = tempfile.mkdtemp(prefix="airlock-check-")
    try:
        yield Path(mdir)
    finally:
        shutil.rmtree(mdir, ignore_errors=True)


def _link(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another filesystem, or links refused: a copy reads the same
        shutil.copyfile(source, dest)
