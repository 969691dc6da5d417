"""Evaluation on a labelled set, provider parity: real models, real ONNX Runtime, real children.

The models come from scripts/evalkit.py (weights fitted with numpy on
synthetic data); what the check reports is compared with the same metrics
computed by numpy straight from the weights (tests/support/evalsets.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.release_health import check_release
from agent.runtime import DeviceRuntime
from airlock.quality.evaluation import Threshold
from airlock.quality.health import Baseline, ModelResult
from keys.release import EvaluationSpec, HealthSpec, ModelEntry, Release, SessionOptions
from scripts import evalkit
from tests.support.evalsets import numpy_metrics, write_tiled_npz

DATA, LABELS = "sha256:" + "d" * 64, "sha256:" + "1" * 64  # digests: check_release reads paths


def _entry(metrics: dict[str, dict[str, float]], *, batch: int = 64,
           max_samples: int | None = None, name: str = "classifier",
           data: str = DATA, **health: Any) -> ModelEntry:
    health.setdefault("runs", 3)
    thresholds = tuple(Threshold(m, **rules) for m, rules in metrics.items())
    digest = "sha256:" + "0" * 64
    return ModelEntry(name, digest, digest, "model.onnx", "application/vnd.onnx", 1,
                      HealthSpec(inputs=digest, outputs=digest, **health),
                      evaluation=EvaluationSpec(data, LABELS, thresholds, batch, max_samples))


def _check(release_dir: Path, entry: ModelEntry, **kw: Any) -> ModelResult:
    release = Release(name="vision", version="1.0", sequence=1,
                      expires=datetime.now(timezone.utc) + timedelta(days=1), models=[entry])
    (result,) = check_release(release_dir, release, **kw).models
    return result


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A release directory holding the good classifier under models/classifier/."""
    rdir = tmp_path_factory.mktemp("classifier")
    evalkit.make(rdir / "models" / "classifier", "classifier", samples=2000)
    return rdir


def test_classifier_metrics_are_what_numpy_computes(classifier: Path) -> None:
    m = _check(classifier, _entry({"accuracy": {"min": 0.92}, "f1_macro": {"min": 0.9},
                                   "top5_accuracy": {"min": 0.97}, "recall[3]": {"min": 0.8}}))
    assert m.ok, m.reason
    want = numpy_metrics(classifier / "models" / "classifier")
    ev = m.evaluation
    assert ev is not None and ev["samples"] == 2000 and ev["output"] == "probs"
    got = ev["metrics"]
    for name in ("accuracy", "top5_accuracy", "f1_macro", "recall_macro", "precision_macro"):
        assert got[name] == pytest.approx(want[name], abs=1e-12), name
    assert 0.94 < got["accuracy"] < 0.97  # the kit's documented quality
    assert ev["confusion"] == want["confusion"]
    assert ev["per_class"]["f1"] == pytest.approx(want["f1"], abs=1e-6)
    assert got["recall[3]"] == pytest.approx(ev["per_class"]["recall"][3], abs=1e-6)
    assert [c["ok"] for c in ev["checks"]] == [True] * 4
    assert ev["data"] == DATA and ev["labels"] == LABELS and ev["baseline"] is None


def test_regressor_metrics_are_what_numpy_computes(tmp_path: Path) -> None:
    evalkit.make(tmp_path / "models" / "regressor", "regressor", samples=1500)
    m = _check(tmp_path, _entry({"mae": {"max": 0.05}, "rmse": {"max": 0.05},
                                 "r2": {"min": 0.99}}, name="regressor", batch=100))
    assert m.ok, m.reason
    want = numpy_metrics(tmp_path / "models" / "regressor")
    assert m.evaluation is not None
    for name in ("mae", "rmse", "r2"):
        assert m.evaluation["metrics"][name] == pytest.approx(want[name], rel=1e-5), name
    assert m.evaluation["metrics"]["mae"] < 0.02


def test_perturbed_weights_fail_naming_metric_value_and_threshold(tmp_path: Path) -> None:
    mdir = tmp_path / "models" / "classifier"
    evalkit.make(mdir, "classifier", samples=2000, perturb_scale=0.5)
    m = _check(tmp_path, _entry({"accuracy": {"min": 0.92}, "top5_accuracy": {"min": 0.97}}))
    assert not m.ok and m.reason is not None
    accuracy = numpy_metrics(mdir)["accuracy"]
    assert accuracy < 0.9
    assert m.reason == f"accuracy {accuracy:.4g} < min 0.92 (on 2000 evaluation samples)"
    # Its golden check passed: the golden outputs were made from this very model.
    assert m.worst is not None and m.worst["probs"]["ok"]


def test_min_delta_compares_with_the_running_release_on_the_same_set(classifier: Path) -> None:
    rules = {"accuracy": {"min": 0.5, "min_delta": -0.01}}
    got = numpy_metrics(classifier / "models" / "classifier")["accuracy"]

    def baseline(value: float, *, data: str = DATA, samples: int = 2000) -> dict[str, Baseline]:
        return {"classifier": Baseline("vision-3", data, LABELS, samples, {"accuracy": value})}

    better = _check(classifier, _entry(rules), baselines=baseline(got + 0.005))
    assert better.ok and better.evaluation is not None
    assert better.evaluation["baseline"]["release"] == "vision-3"

    worse = _check(classifier, _entry(rules), baselines=baseline(got + 0.02))
    assert not worse.ok and worse.reason is not None
    assert (f"accuracy {got:.4g} < {got + 0.01:.4g} (vision-3's {got + 0.02:.4g} with "
            "min_delta -0.01)") in worse.reason

    # Another set, or another number of samples of it: nothing to compare, and it says so.
    other = _check(classifier, _entry(rules), baselines=baseline(0.99, data="sha256:" + "e" * 64))
    assert other.ok and other.note is not None
    assert "accuracy min_delta not applied: vision-3 was evaluated on another set" in other.note
    fewer = _check(classifier, _entry(rules), baselines=baseline(0.99, samples=1000))
    assert fewer.ok and fewer.note is not None and "on 1000 samples" in fewer.note


def test_max_samples_scores_only_the_first_rows(classifier: Path) -> None:
    m = _check(classifier, _entry({"accuracy": {"min": 0.9}}, max_samples=500, batch=7))
    assert m.ok and m.evaluation is not None
    assert m.evaluation["samples"] == 500
    want = numpy_metrics(classifier / "models" / "classifier", max_samples=500)
    assert m.evaluation["metrics"]["accuracy"] == pytest.approx(want["accuracy"])


def test_a_set_larger_than_the_memory_budget_is_streamed_within_it(tmp_path: Path) -> None:
    mdir = tmp_path / "models" / "classifier"
    evalkit.make(mdir, "classifier", samples=2000)
    x = np.load(mdir / "eval_data.npz")["x"]
    labels = np.load(mdir / "eval_labels.npz")["probs"]
    accuracy = numpy_metrics(mdir)["accuracy"]  # of one copy: the tiled set scores the same
    repeat = 2500  # 5,000,000 samples: 320 MB of inputs
    size = write_tiled_npz(mdir / "eval_data.npz", {"x": x}, repeat)
    write_tiled_npz(mdir / "eval_labels.npz", {"probs": labels}, repeat)
    budget = 200
    assert size > 1.5 * budget * 1024 * 1024
    m = _check(tmp_path, _entry({"accuracy": {"min": 0.92}}, batch=8192,
                                max_memory_mb=budget, timeout_s=120))
    assert m.ok, m.reason
    assert m.evaluation is not None and m.evaluation["samples"] == 2000 * repeat
    assert m.evaluation["metrics"]["accuracy"] == pytest.approx(accuracy)
    assert m.peak_rss_mb is not None and m.peak_rss_mb < budget


def test_a_missing_provider_fails_naming_it(classifier: Path) -> None:
    wanted = ("OpenVINOExecutionProvider", "CPUExecutionProvider")
    m = _check(classifier, _entry({"accuracy": {"min": 0.9}}, providers=wanted))
    assert not m.ok and m.reason is not None
    assert m.reason.startswith("execution provider OpenVINOExecutionProvider is not available "
                               "on this device (available: ")
    assert m.providers is not None and m.providers["missing"] == ["OpenVINOExecutionProvider"]
    assert m.evaluation is None  # nothing ran


def test_with_fallback_allowed_the_fallback_is_reported(classifier: Path) -> None:
    wanted = ("OpenVINOExecutionProvider", "CPUExecutionProvider")
    m = _check(classifier, _entry({"accuracy": {"min": 0.9}}, providers=wanted,
                                  provider_fallback=True))
    assert m.ok, m.reason
    p = m.providers
    assert p is not None
    assert p["requested"] == list(wanted) and p["source"] == "release"
    assert p["missing"] == ["OpenVINOExecutionProvider"]
    assert p["session"] == ["CPUExecutionProvider"]
    assert p["nodes"] == {"CPUExecutionProvider": "all"}
    assert m.note is not None and ("fell back: OpenVINOExecutionProvider not available, ran on "
                                   "CPUExecutionProvider") in m.note


def test_two_providers_report_which_ran_each_node(classifier: Path) -> None:
    import onnxruntime as ort

    # Both are in every onnxruntime wheel this suite installs; the Azure provider runs no
    # local node, so ONNX Runtime's profile must show the two graph nodes on the CPU.
    assert "AzureExecutionProvider" in ort.get_available_providers()
    m = _check(classifier, _entry({"accuracy": {"min": 0.9}},
                                  providers=("AzureExecutionProvider", "CPUExecutionProvider")))
    assert m.ok, m.reason
    assert m.providers is not None
    assert m.providers["session"] == ["AzureExecutionProvider", "CPUExecutionProvider"]
    assert m.providers["nodes"] == {"CPUExecutionProvider": 2}


def test_the_device_runtime_wins_over_the_release(classifier: Path) -> None:
    entry = _entry({"accuracy": {"min": 0.9}})  # the release says CPU
    device = DeviceRuntime(providers=("OpenVINOExecutionProvider", "CPUExecutionProvider"),
                           session=SessionOptions(graph_optimization_level="disable",
                                                  intra_op_threads=1))
    m = _check(classifier, entry, runtime=device)
    assert not m.ok and m.reason is not None and "OpenVINOExecutionProvider" in m.reason
    assert m.providers is not None and m.providers["source"] == "device"
    lenient = DeviceRuntime(providers=device.providers, provider_fallback=True,
                            session=device.session)
    ok = _check(classifier, entry, runtime=lenient)
    assert ok.ok and ok.providers is not None and ok.providers["missing"] == [
        "OpenVINOExecutionProvider"]


def test_an_evaluation_that_cannot_score_is_a_failed_check(classifier: Path,
                                                            tmp_path: Path) -> None:
    mdir = tmp_path / "models" / "classifier"
    evalkit.make(mdir, "classifier", samples=100)
    np.savez(mdir / "eval_labels.npz", probs=np.full(100, 12, np.int64))  # no class 12
    m = _check(tmp_path, _entry({"accuracy": {"min": 0.9}}))
    assert not m.ok and m.reason is not None
    assert "label 12 of sample 0 is not one of the model's 10 classes" in m.reason
    (mdir / "eval_data.npz").unlink()
    gone = _check(tmp_path, _entry({"accuracy": {"min": 0.9}}))
    assert gone.reason == "evaluation file models/classifier/eval_data.npz is missing"
