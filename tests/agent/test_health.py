"""Health checks against real ONNX models run by real ONNX Runtime in real child processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from agent.release_health import check_release
from keys.release import HealthSpec, ModelEntry, Release
from scripts import modelkit
from tests.support.cli import REPO

DIGEST = "sha256:" + "0" * 64  # check_release reads files by path; digests are the store's business


def put_model(release_dir: Path, name: str = "detector", *, golden: bool = True,
              **make: Any) -> Path:
    """A real model (+ golden npz) where an installed release keeps it."""
    mdir = release_dir / "models" / name
    modelkit.make(mdir, **make)
    if not golden:
        (mdir / "inputs.npz").unlink()
        (mdir / "outputs.npz").unlink()
    return mdir


def entry(name: str = "detector", golden: bool = True, **health: Any) -> ModelEntry:
    health.setdefault("runs", 5)
    if golden:
        health.update(inputs=DIGEST, outputs=DIGEST)
    return ModelEntry(name, DIGEST, DIGEST, "model.onnx", "application/vnd.onnx", 1,
                      HealthSpec(**health))


def release(*models: ModelEntry) -> Release:
    return Release(name="vision", version="1.0", sequence=1,
                   expires=datetime.now(timezone.utc) + timedelta(days=1), models=list(models))


def test_good_model_passes_with_measurements(tmp_path: Path) -> None:
    put_model(tmp_path)
    report = check_release(tmp_path, release(entry(max_p95_ms=1000, max_memory_mb=1000)))
    assert report.ok and report.reason is None
    (m,) = report.models
    assert m.ok and m.reason is None and m.note is None
    assert m.p95_ms is not None and 0 < m.p95_ms < 1000
    # Peak covers the runtime plus the model, and is what the kernel saw.
    assert m.peak_rss_mb is not None and m.runtime_rss_mb is not None
    assert 20 < m.runtime_rss_mb <= m.peak_rss_mb < 1000
    assert m.worst is not None and m.worst["y"]["ok"] and m.worst["y"]["abs_err"] == 0.0
    json.dumps(report.to_dict())  # goes into the journal and status --json as is


def test_wrong_outputs_name_output_and_worst_element(tmp_path: Path) -> None:
    mdir = put_model(tmp_path, wrong=True)
    report = check_release(tmp_path, release(entry()))
    assert not report.ok
    (m,) = report.models
    expected = np.load(mdir / "outputs.npz")["y"]
    # Every element is off by 1; the worst relative to its tolerance is the smallest |expected|.
    worst_index = [int(i) for i in np.unravel_index(np.argmin(np.abs(expected)), expected.shape)]
    assert m.worst is not None
    assert m.worst["y"]["index"] == worst_index
    assert m.worst["y"]["abs_err"] == pytest.approx(1.0)
    assert m.reason is not None
    assert m.reason.startswith(f"output 'y' differs: worst element {worst_index} got ")
    assert "abs err 1 > atol 1e-05" in m.reason
    assert report.reason == f"health check of model 'detector' failed: {m.reason}"


def test_loose_tolerance_accepts_small_differences(tmp_path: Path) -> None:
    put_model(tmp_path, wrong=True)  # off by exactly 1.0 everywhere
    assert check_release(tmp_path, release(entry(atol=1.001, rtol=0))).ok
    assert not check_release(tmp_path, release(entry(atol=0.999, rtol=0))).ok


def test_golden_shape_mismatch_fails(tmp_path: Path) -> None:
    mdir = put_model(tmp_path)
    np.savez(mdir / "outputs.npz", y=np.zeros((1, 8), np.float32))
    m = check_release(tmp_path, release(entry())).models[0]
    assert not m.ok
    assert m.reason == "output 'y' has shape [1, 16], golden shape [1, 8]"


def test_too_slow_fails_on_p95(tmp_path: Path) -> None:
    put_model(tmp_path)
    m = check_release(tmp_path, release(entry(max_p95_ms=0.0001, runs=7))).models[0]
    assert not m.ok and m.p95_ms is not None
    assert m.reason == f"p95 latency {m.p95_ms:.3g} ms over 7 runs > max_p95_ms 0.0001"


def test_tiny_memory_budget_kills_the_child(tmp_path: Path) -> None:
    put_model(tmp_path, pad_mb=64)
    m = check_release(tmp_path, release(entry(max_memory_mb=20))).models[0]
    assert not m.ok and m.reason is not None
    assert m.reason.endswith("> max_memory_mb 20 (killed)") and m.reason.startswith("used ")
    assert m.peak_rss_mb is not None and m.peak_rss_mb > 20


def _use_padding(mdir: Path, parts: int = 8) -> None:
    """Make modelkit's padding weights the model reads, as ``parts`` MatMul weights.

    The child never loads a weight no node uses, so the padding alone would cost nothing.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(mdir / "model.onnx"))
    g = model.graph
    pad = next(t for t in g.initializer if t.name == "padding")
    weights = numpy_helper.to_array(pad)
    g.initializer.remove(pad)
    cols = weights.size // (modelkit.WIDTH * parts)
    g.node[-1].output[0] = "y0"  # the last Add; y becomes y0 + 0 * sum(x @ W_i)
    total = "y0"
    for i, w in enumerate(np.split(weights[: cols * modelkit.WIDTH * parts], parts)):
        g.initializer.append(numpy_helper.from_array(w.reshape(modelkit.WIDTH, cols), f"w{i}"))
        g.node.extend([helper.make_node("MatMul", ["x", f"w{i}"], [f"h{i}"]),
                       helper.make_node("ReduceSum", [f"h{i}"], [f"s{i}"], keepdims=1),
                       helper.make_node("Mul", [f"s{i}", "zero"], [f"z{i}"]),
                       helper.make_node("Add", [total, f"z{i}"], [f"t{i}"])])
        total = f"t{i}"
    g.node[-1].output[0] = "y"
    g.initializer.append(numpy_helper.from_array(np.zeros((1, 1), np.float32), "zero"))
    onnx.save(model, str(mdir / "model.onnx"))
    modelkit.golden(mdir / "model.onnx", mdir)


def test_memory_budget_tells_a_big_model_from_a_small_one(tmp_path: Path) -> None:
    # ~60 MB for interpreter + ONNX Runtime + a tiny model; the 80 MB of weights push past 100.
    put_model(tmp_path, "small")
    _use_padding(put_model(tmp_path, "big", pad_mb=80))
    report = check_release(tmp_path, release(entry("small", max_memory_mb=100),
                                             entry("big", max_memory_mb=100)))
    small, big = report.models
    assert small.ok, small.reason
    assert not report.ok and not big.ok
    assert big.peak_rss_mb is not None and big.peak_rss_mb > 100
    assert report.reason is not None
    assert report.reason.startswith("health check of model 'big' failed: used ")


@pytest.mark.parametrize("used", [True, False])
def test_the_child_holds_a_models_weights_once(tmp_path: Path, used: bool) -> None:
    # ONNX Runtime alone peaks at twice the weights (the parsed file and its copy of each);
    # the child maps them from the file instead, and never reads one no node uses.
    mdir = put_model(tmp_path, pad_mb=80)
    if used:
        _use_padding(mdir)
    m = check_release(tmp_path, release(entry())).models[0]
    assert m.ok and m.peak_rss_mb is not None and m.runtime_rss_mb is not None, m.reason
    weights = m.peak_rss_mb - m.runtime_rss_mb
    assert weights < (1.3 * 80 if used else 20), (weights, m.peak_rss_mb)


def test_a_model_with_external_data_is_loaded_from_its_files(tmp_path: Path) -> None:
    # Its weights are already external (ONNX Runtime maps them): the child loads it as it is.
    mdir = put_model(tmp_path, pad_mb=8, external=True)
    assert (mdir / "model.onnx.data").is_file()
    m = check_release(tmp_path, release(entry())).models[0]
    assert m.ok, m.reason


def test_crashing_runtime_is_a_failed_check(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    put_model(tmp_path)
    monkeypatch.setenv("AIRLOCK_TEST_FAULT", "health-crash")
    report = check_release(tmp_path, release(entry()))
    assert not report.ok
    assert report.models[0].reason is not None
    assert report.models[0].reason.startswith("killed by signal SIGSEGV")


def test_hanging_model_times_out_and_leaves_no_process(tmp_path: Path) -> None:
    put_model(tmp_path, hang=True)
    start = time.monotonic()
    report = check_release(tmp_path, release(entry(timeout_s=2)))
    elapsed = time.monotonic() - start
    assert not report.ok
    assert report.models[0].reason == "timed out after 2 s (killed)"
    assert 2 <= elapsed < 4
    assert psutil.Process().children(recursive=True) == []


def test_orphaned_check_dies_with_the_agent(tmp_path: Path) -> None:
    """kill -9 of the agent mid-check must not leave a spinning check behind."""
    put_model(tmp_path, hang=True)
    script = textwrap.dedent(f"""
        from datetime import datetime, timezone
        from pathlib import Path
        from agent.release_health import check_release
        from keys.release import HealthSpec, ModelEntry, Release
        d = {DIGEST!r}
        spec = HealthSpec(inputs=d, outputs=d, timeout_s=60)
        model = ModelEntry("detector", d, d, "model.onnx", "application/vnd.onnx", 1, spec)
        rel = Release("vision", "1.0", 1, datetime.now(timezone.utc), models=[model])
        check_release(Path({str(tmp_path)!r}), rel)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    agent = subprocess.Popen([sys.executable, "-c", script], env=env)
    children: list[psutil.Process] = []
    try:
        proc = psutil.Process(agent.pid)
        deadline = time.monotonic() + 20
        while not children and time.monotonic() < deadline:
            children = proc.children()
            time.sleep(0.05)
        assert children, "the health child never started"
        time.sleep(0.5)  # let it reach the hanging inference
        agent.kill()
        agent.wait()
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive
    finally:
        agent.kill()
        agent.wait()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()


def test_model_without_golden_data_runs_on_zeros(tmp_path: Path) -> None:
    put_model(tmp_path, golden=False)
    m = check_release(tmp_path, release(entry(golden=False))).models[0]
    assert m.ok and m.worst is None and m.p95_ms is not None
    assert m.note is not None and m.note.startswith("no golden data: ran on zeros")


def test_missing_files_fail_cleanly(tmp_path: Path) -> None:
    report = check_release(tmp_path, release(entry(golden=False)))
    assert not report.ok
    assert report.models[0].reason == "model file models/detector/model.onnx is missing"

    mdir = put_model(tmp_path)
    (mdir / "outputs.npz").unlink()
    assert check_release(tmp_path, release(entry())).models[0].reason == (
        "golden outputs file models/detector/outputs.npz is missing")


def test_garbage_model_file_fails_cleanly(tmp_path: Path) -> None:
    mdir = put_model(tmp_path)
    (mdir / "model.onnx").write_bytes(b"not a model at all")
    m = check_release(tmp_path, release(entry())).models[0]
    assert not m.ok and m.reason is not None
    assert m.reason.startswith("ONNX Runtime cannot load the model: ")


def test_providers_argument_overrides_the_spec(tmp_path: Path) -> None:
    put_model(tmp_path)
    rel = release(entry(providers=("NoSuchExecutionProvider",)))
    m = check_release(tmp_path, rel).models[0]
    assert not m.ok and m.reason is not None
    assert m.reason.startswith("execution provider NoSuchExecutionProvider is not available")
    assert "CPUExecutionProvider" in m.reason  # says what would work
    assert check_release(tmp_path, rel, providers=["CPUExecutionProvider"]).ok


def test_result_survives_noise_on_stdout_and_stderr(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    put_model(tmp_path / "release", wrong=True)
    # Raw writes to fd 1 and 2 before any of the check's code, as a native
    # library loaded at start-up could (the child is isolated: no
    # sitecustomize of ours can reach it any more).
    monkeypatch.setenv("AIRLOCK_TEST_FAULT", "health-noise")
    m = check_release(tmp_path / "release", release(entry())).models[0]
    assert not m.ok and m.reason is not None and m.reason.startswith("output 'y' differs")


def test_release_from_a_real_bundle(tmp_path: Path, make_bundle: Callable[..., Path],
                                    keyset: Any) -> None:
    from airlock.format.bundle import BundleReader
    from keys.trust import TrustRoot

    def installed(bundle: Path, where: Path) -> Release:
        with bundle.open("rb") as f:
            reader = BundleReader(f)
            head = reader.head()
            trust = TrustRoot.from_bytes(keyset.trust.read_bytes())
            _, verified = trust.verify_head(head.release_json, head.root_json)
            rel = verified.release
            names: dict[str, Path] = {}
            for m in rel.models:
                mdir = where / "models" / m.name
                mdir.mkdir(parents=True)
                names[m.blob] = mdir / m.file_name
                if m.health.inputs and m.health.outputs:
                    names[m.health.inputs] = mdir / "inputs.npz"
                    names[m.health.outputs] = mdir / "outputs.npz"
            for member in reader.files(rel.files):
                if member.digest in names:
                    with names[member.digest].open("wb") as out:
                        member.copy_to(out)
        return rel

    good = installed(make_bundle(sequence=1), tmp_path / "v1")
    assert check_release(tmp_path / "v1", good).ok
    bad = installed(make_bundle(sequence=2, wrong=True), tmp_path / "v2")
    report = check_release(tmp_path / "v2", bad)
    assert not report.ok and report.reason is not None
    assert "output 'y' differs" in report.reason


def test_unset_memory_budget_still_has_a_hard_cap(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import airlock.quality.health_process

    # The real cap is 3/4 of available memory (at least 256 MB); shrink it to see it bite.
    monkeypatch.setattr(airlock.quality.health_process, "_CAP_FLOOR_MB", 100.0)
    monkeypatch.setattr(airlock.quality.health_process, "_CAP_SHARE_OF_AVAILABLE", 0.0)
    _use_padding(put_model(tmp_path, pad_mb=80))
    m = check_release(tmp_path, release(entry())).models[0]
    assert not m.ok and m.reason is not None
    assert m.reason.startswith("used ")
    assert "> hard cap 100 MiB (no max_memory_mb set" in m.reason


def test_a_check_that_cannot_start_is_a_failure_not_an_exception(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    put_model(tmp_path)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    report = check_release(tmp_path, release(entry()))
    assert not report.ok and report.reason is not None
    assert report.reason.startswith("health check of model 'detector' failed: check could not run:")
