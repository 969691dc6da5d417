"""A device's journey with evaluated releases, through the two command lines as a user runs them.

Good release installed and its metrics shown; a release whose golden check
passes but whose accuracy dropped refused (exit 4, metric named, previous
release active); a release within its absolute threshold but too far below
the running one refused by ``min_delta``; the device's providers set by
``airlock-agent config`` and used by every check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.layout import Layout
from agent.observe.metrics import Observed, metrics_registry
from tests.support.cli import run_agent
from tests.support.device import active_id, agent_json, assert_consistent, init_device
from tests.support.evalsets import eval_model, numpy_metrics
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec

METRICS = {"accuracy": {"min": 0.92, "min_delta": -0.01}, "f1_macro": {"min": 0.9},
           "top5_accuracy": {"min": 0.97}}


def _bundle(tmp_path: Path, keyset: Keys, sequence: int, perturb: float,
            metrics: dict[str, Any] | None = None, **health: Any) -> tuple[Path, Path]:
    model_dir = tmp_path / f"model-{sequence}"
    model = eval_model(model_dir, perturb=perturb, metrics=metrics or METRICS, health=health)
    spec = write_spec(tmp_path, sequence=sequence, version=f"1.{sequence}", models=[model])
    return build(spec, tmp_path / f"vision-{sequence}.airlock", [keyset.release_key]), model_dir


def _health_results(root: Path, release: str) -> list[dict[str, Any]]:
    entries = agent_json(root, "history")["entries"]
    return [e for e in entries if e["event"] == "health-result" and e["release"] == release]


def test_accuracy_loss_is_refused_on_the_device(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    good, good_dir = _bundle(tmp_path, keyset, 1, 0.0)
    installed = agent_json(root, "install", good)
    accuracy = numpy_metrics(good_dir)["accuracy"]
    (checked,) = installed["health"]["models"]
    assert checked["evaluation"]["metrics"]["accuracy"] == pytest.approx(accuracy)

    status = agent_json(root, "status")
    shown = status["active"]["metrics"]["classifier"]
    assert shown["accuracy"] == pytest.approx(accuracy)
    assert shown["samples"] == 2000
    assert shown["checked"] == ["accuracy", "f1_macro", "top5_accuracy"]
    human = run_agent("--root", root, "status").stdout
    assert f"classifier: accuracy {accuracy:.4g}, f1_macro" in human
    registry = metrics_registry(Layout(root), Observed())  # what serve's /metrics exposes
    assert registry.get_sample_value("airlock_model_metric", {
        "release": "vision-1", "model": "classifier", "metric": "accuracy"}) == accuracy

    worse, worse_dir = _bundle(tmp_path, keyset, 2, 0.5)
    r = run_agent("--root", root, "install", worse)
    assert r.returncode == 4, r.stderr
    (line,) = r.stderr.strip().splitlines()
    dropped = numpy_metrics(worse_dir)["accuracy"]
    assert line.startswith("airlock-agent: error: vision-2 not installed: health check of model "
                           f"'classifier' failed: accuracy {dropped:.4g} < min 0.92; ")
    assert f"(vision-1's {accuracy:.4g} with min_delta -0.01)" in line
    assert line.endswith("(on 2000 evaluation samples); vision-1 stays active")
    assert active_id(root) == "vision-1"
    # Its golden check passed: only the evaluation tells the loss.
    (result,) = _health_results(root, "vision-2")
    assert result["ok"] is False
    assert result["report"]["models"][0]["worst"]["probs"]["ok"] is True
    assert_consistent(root)


def test_min_delta_against_the_running_release(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    good, good_dir = _bundle(tmp_path, keyset, 1, 0.0)
    agent_json(root, "install", good)
    running = numpy_metrics(good_dir)["accuracy"]

    # Above its absolute floor (0.92), but more than a point below what runs.
    slipped, slipped_dir = _bundle(tmp_path, keyset, 2, 0.3)
    got = numpy_metrics(slipped_dir)["accuracy"]
    assert 0.92 < got < running - 0.01
    r = run_agent("--root", root, "install", slipped)
    assert r.returncode == 4, r.stderr
    assert (f"accuracy {got:.4g} < {running - 0.01:.4g} (vision-1's {running:.4g} with "
            "min_delta -0.01) (on 2000 evaluation samples)") in r.stderr
    assert "min 0.92" not in r.stderr
    assert active_id(root) == "vision-1"

    # Within a point: installed, and the comparison is recorded with it.
    close, _ = _bundle(tmp_path, keyset, 3, 0.05)
    result = agent_json(root, "install", close)
    (m,) = result["health"]["models"]
    assert m["evaluation"]["baseline"]["release"] == "vision-1"
    assert m["evaluation"]["baseline"]["metrics"]["accuracy"] == pytest.approx(running)
    (delta,) = [c for c in m["evaluation"]["checks"] if c["rule"] == "min_delta"]
    assert delta["ok"] is True and delta["baseline"] == pytest.approx(running)
    # A later check of it compares with the same baseline, not with itself.
    again = agent_json(root, "check")["health"]["models"][0]["evaluation"]
    assert again["baseline"]["release"] == "vision-1"
    assert all(c["ok"] is True for c in again["checks"])


def test_the_device_providers_are_used_and_reported(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    shown = agent_json(root, "config", "--providers",
                       "OpenVINOExecutionProvider,CPUExecutionProvider", "--intra-op-threads", "1")
    assert shown["runtime"] == {"providers": ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
                                "session": {"intra_op_threads": 1}}
    # One config command for every device setting: the ring and sink stay as they were.
    assert shown["changed"] == ["runtime: as each release says -> OpenVINOExecutionProvider, "
                                "CPUExecutionProvider; intra_op_threads=1"]
    assert shown["sink"] == {"type": "oci-dir"}
    bundle, _ = _bundle(tmp_path, keyset, 1, 0.0)
    r = run_agent("--root", root, "install", bundle)
    assert r.returncode == 4, r.stderr
    assert ("execution provider OpenVINOExecutionProvider is not available on this device"
            in r.stderr)
    assert active_id(root) is None

    agent_json(root, "config", "--provider-fallback")
    result = agent_json(root, "install", bundle)
    providers = result["health"]["models"][0]["providers"]
    assert providers["source"] == "device" and providers["fallback_allowed"] is True
    assert providers["missing"] == ["OpenVINOExecutionProvider"]
    assert providers["session"] == ["CPUExecutionProvider"]
    status = agent_json(root, "status")
    model = status["active"]["health"]["report"]["models"][0]
    assert "fell back: OpenVINOExecutionProvider not available" in model["note"]

    bad = run_agent("--root", root, "config", "--graph-optimization-level", "max")
    assert bad.returncode == 2
    assert ("'runtime.session.graph_optimization_level' must be one of disable, basic, "
            "extended, all") in bad.stderr
    config = json.loads(run_agent("--root", root, "config", "--json").stdout)
    assert config["runtime"]["provider_fallback"] is True  # the refused change changed nothing
    reset = agent_json(root, "config", "--reset-runtime")
    assert "runtime" not in reset
