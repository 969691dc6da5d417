"""At build: the evaluation set, its labels and the input contract, checked before signing.

What a device's evaluation would refuse after the stick has travelled is
refused by ``airlock build`` (exit 2, one line naming the spec field, and
for a contract the input and the rule); no bundle is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airlock.errors import SpecError
from scripts import evalkit, modelkit
from tests.support.cli import run_airlock
from tests.support.evalsets import eval_model
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The good classifier, its golden data and evaluation set (read-only for the tests)."""
    d = tmp_path_factory.mktemp("classifier")
    evalkit.make(d, "classifier", samples=300)
    return d


def _refused(tmp_path: Path, keyset: Keys, model: dict[str, Any]) -> str:
    spec = write_spec(tmp_path, models=[model])
    out = tmp_path / "out.airlock"
    with pytest.raises(SpecError) as e:
        build(spec, out, [keyset.release_key])
    assert e.value.exit_code == 2
    assert not out.exists()
    return str(e.value)


def _copy(kit_dir: Path, tmp_path: Path) -> Path:
    d = tmp_path / "m"
    d.mkdir()
    for f in kit_dir.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    return d


def test_golden_data_breaking_the_contract_is_refused_naming_input_and_rule(
        kit_dir: Path, tmp_path: Path, keyset: Keys) -> None:
    d = _copy(kit_dir, tmp_path)
    x = np.load(d / "inputs.npz")["x"]
    model = eval_model(d, samples=300, contract={"x": {"dtype": "float32",
                                                       "shape": ["batch", 16], "max": 1.0}})
    spec = write_spec(tmp_path, models=[model])
    out = tmp_path / "out.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    over = int((x > 1.0).sum())
    first = np.argwhere(x > 1.0)[0]
    assert (f"field 'models[0].health.inputs': breaks the input contract: input 'x': {over} "
            f"value(s) > max 1 (first: row {first[0]}, x[{first[0]}, {first[1]}] = ") in line
    assert not out.exists()


def test_the_evaluation_set_breaking_the_contract_is_refused(
        kit_dir: Path, tmp_path: Path, keyset: Keys) -> None:
    d = _copy(kit_dir, tmp_path)
    x = np.load(d / "eval_data.npz")["x"]
    x[217, 5] = np.nan
    np.savez(d / "eval_data.npz", x=x)
    model = eval_model(tmp_path / "fresh", samples=300, contract={"x": {"shape": ["batch", 16]}})
    model["evaluate"]["data"] = str(d / "eval_data.npz")
    message = _refused(tmp_path, keyset, model)
    assert ("field 'models[0].evaluate.data': breaks the input contract: input 'x': 1 NaN "
            "value(s), not allowed (first: row 217, x[217, 5] = nan)") in message


def _edit_contract(contract: dict[str, Any]) -> Callable[[dict[str, Any], Path], None]:
    def edit(model: dict[str, Any], d: Path) -> None:
        model["inputs_contract"] = contract
    return edit


def _labels(**arrays: Any) -> Callable[[dict[str, Any], Path], None]:
    def edit(model: dict[str, Any], d: Path) -> None:
        np.savez(d / "labels.npz", **arrays)
        model["evaluate"]["labels"] = str(d / "labels.npz")
    return edit


def _data(**arrays: Any) -> Callable[[dict[str, Any], Path], None]:
    def edit(model: dict[str, Any], d: Path) -> None:
        np.savez(d / "data.npz", **arrays)
        model["evaluate"]["data"] = str(d / "data.npz")
    return edit


def _metrics(metrics: dict[str, Any]) -> Callable[[dict[str, Any], Path], None]:
    def edit(model: dict[str, Any], d: Path) -> None:
        model["evaluate"]["metrics"] = metrics
    return edit


def _both(*edits: Callable[[dict[str, Any], Path], None]) -> Callable[[dict[str, Any], Path], None]:
    def edit(model: dict[str, Any], d: Path) -> None:
        for e in edits:
            e(model, d)
    return edit


X = np.zeros((300, 16), np.float32)
CASES: list[tuple[str, Callable[[dict[str, Any], Path], None], str, str]] = [
    ("contract-dtype", _edit_contract({"x": {"dtype": "int64"}}), "inputs_contract",
     "does not fit the model: input 'x': the contract says dtype int64, the model takes float32"),
    ("contract-rank", _edit_contract({"x": {"shape": ["batch"]}}), "inputs_contract",
     "the contract says rank 1 [batch], the model takes rank 2 [batch, 16]"),
    ("contract-dim", _edit_contract({"x": {"shape": ["batch", 8]}}), "inputs_contract",
     "input 'x': dimension 1 is 8 in the contract, 16 in the model"),
    ("contract-unknown-input", _edit_contract({"image": {"dtype": "uint8"}}), "inputs_contract",
     "input 'image' is in the contract but the model does not take it (its inputs: 'x')"),
    ("labels-wrong-output", _labels(label=np.zeros(300, np.int64)), "evaluate.labels",
     "names 'label', which the model does not output (its outputs: 'probs')"),
    ("labels-two-arrays", _labels(probs=np.zeros(300, np.int64), y=np.zeros(300)),
     "evaluate.labels", "holds 2 arrays; it must hold one"),
    ("labels-rows", _labels(probs=np.zeros(299, np.int64)), "evaluate.labels",
     "has 299 rows for the 300 samples of evaluate.data"),
    ("labels-beyond-classes", _labels(probs=np.arange(300) % 13), "evaluate.labels",
     "label 10 of sample 10 is not one of the model's 10 classes"),
    ("labels-float", _labels(probs=np.zeros(300)), "evaluate.labels",
     "classification labels must be integers, one per sample"),
    ("data-wrong-input", _data(image=X), "evaluate.data", "lacks model input(s) 'x'"),
    ("data-dtype", _data(x=X.astype(np.float64)), "evaluate.data",
     "array 'x' is float64; the model takes float32"),
    ("data-width", _data(x=np.zeros((300, 8), np.float32)), "evaluate.data",
     "dimension 1 is 8, the model takes 16"),
    ("data-fortran", _data(x=np.asfortranarray(X)), "evaluate.data", "is in Fortran order"),
    ("data-pickled", _data(x=np.array([object()] * 300, dtype=object)), "evaluate.data",
     "holds Python objects"),
    ("data-empty", _data(x=np.zeros((0, 16), np.float32)), "evaluate.data", "holds no samples"),
    ("regression-metric-on-classes", _metrics({"mae": {"max": 1}}), "evaluate.labels",
     "hold 1 value(s) per sample; output 'probs' gives 10"),
    ("regression-labels-text", _both(_metrics({"mae": {"max": 1}}),
                                     _labels(probs=np.array(["a"] * 300))), "evaluate.labels",
     "regression labels must be numbers, not <U1"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_what_a_device_could_not_evaluate_is_refused(
        case: tuple[str, Callable[[dict[str, Any], Path], None], str, str],
        kit_dir: Path, tmp_path: Path, keyset: Keys) -> None:
    _id, edit, field, message = case
    d = _copy(kit_dir, tmp_path)
    model = eval_model(d, samples=300)
    edit(model, d)
    text = _refused(tmp_path, keyset, model)
    assert f"field 'models[0].{field}': " in text and message in text, text


def test_regression_labels_are_numbers_not_classes(tmp_path: Path, keyset: Keys) -> None:
    """The same regression labels pass once the metric says regression (no false refusal)."""
    d = tmp_path / "r"
    model = eval_model(d, kind="regressor", samples=200)
    spec = write_spec(tmp_path, models=[model])
    build(spec, tmp_path / "ok.airlock", [keyset.release_key])


def test_top_k_needs_scores_not_labels(tmp_path: Path, keyset: Keys) -> None:
    """A model that outputs class numbers cannot be scored for top-k accuracy."""
    import onnx
    from onnx import TensorProto, helper

    d = tmp_path / "m"
    evalkit.make(d, "classifier", samples=100)
    m = onnx.load(str(d / "model.onnx"))
    m.graph.node.append(helper.make_node("ArgMax", ["probs"], ["label"], axis=1, keepdims=0))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
    onnx.save(m, str(d / "model.onnx"))
    np.savez(d / "eval_labels.npz", label=np.load(d / "eval_labels.npz")["probs"])
    entry = {"name": "classifier", "path": str(d / "model.onnx"),
             "evaluate": {"data": str(d / "eval_data.npz"), "labels": str(d / "eval_labels.npz"),
                          "metrics": {"top5_accuracy": {"min": 0.9}}}}
    text = _refused(tmp_path, keyset, entry)
    assert ("field 'models[0].evaluate.metrics': top5_accuracy needs [samples, classes] scores, "
            "and output 'label' is int64") in text
    entry["evaluate"]["metrics"] = {"accuracy": {"min": 0.9}}
    build(write_spec(tmp_path, models=[entry]), tmp_path / "ok.airlock", [keyset.release_key])


def test_batch_must_fit_a_fixed_first_dimension(tmp_path: Path, keyset: Keys) -> None:
    d = tmp_path / "m"
    modelkit.make(d)  # x: [1, 16] -> y: [1, 16]
    x = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    np.savez(d / "data.npz", x=x)
    np.savez(d / "labels.npz", y=x * 2 + 1)
    entry = {"name": "scale", "path": str(d / "model.onnx"),
             "evaluate": {"data": str(d / "data.npz"), "labels": str(d / "labels.npz"),
                          "batch": 32, "metrics": {"mae": {"max": 1e-5}}}}
    text = _refused(tmp_path, keyset, entry)
    assert ("field 'models[0].evaluate.batch': 32 does not fit input 'x', whose first dimension "
            "is fixed at 1 in the model; set batch: 1") in text
    entry["evaluate"]["batch"] = 1
    build(write_spec(tmp_path, models=[entry]), tmp_path / "ok.airlock", [keyset.release_key])


def test_a_compressed_set_builds_and_inspect_shows_what_will_be_enforced(
        tmp_path: Path, keyset: Keys) -> None:
    d = tmp_path / "m"
    model = eval_model(d, samples=300, metrics={"accuracy": {"min": 0.92, "min_delta": -0.01},
                                                "f1_macro": {"min": 0.9}},
                       contract={"x": {"dtype": "float32", "shape": ["batch", 16],
                                       "min": -10, "max": 10}},
                       health={"providers": ["CPUExecutionProvider"],
                               "session": {"intra_op_threads": 1}})
    data = dict(np.load(d / "eval_data.npz"))
    np.savez_compressed(d / "eval_data.npz", **data)  # deflated: still streamed
    bundle = build(write_spec(tmp_path, models=[model]), tmp_path / "v.airlock",
                   [keyset.release_key])
    r = run_airlock("inspect", bundle, "--json")
    assert r.returncode == 0, r.stderr
    (m,) = json.loads(r.stdout)["models"]
    assert m["evaluate"]["metrics"] == {"accuracy": {"min": 0.92, "min_delta": -0.01},
                                        "f1_macro": {"min": 0.9}}
    assert m["evaluate"]["batch"] == 64 and m["evaluate"]["data_bytes"] > 0
    assert m["inputs_contract"] == {"x": {"dtype": "float32", "shape": ["batch", 16],
                                          "min": -10.0, "max": 10.0}}
    assert m["providers"] == ["CPUExecutionProvider"] and m["provider_fallback"] is False
    human = run_airlock("inspect", bundle).stdout
    assert "evaluates on eval_data.npz" not in human  # file names are not signed; digests are
    assert "accuracy >= 0.92, accuracy >= running - 0.01; f1_macro >= 0.9" in human
    assert "x: float32 [batch, 16] in [-10, 10]" in human


def test_the_host_check_scores_the_set_before_signing(tmp_path: Path, keyset: Keys) -> None:
    """``airlock build`` runs the device's evaluation: a model below an absolute threshold is
    refused before it is signed (exit 4), in the words a device would use."""
    d = tmp_path / "worse"
    model = eval_model(d, samples=300, perturb=0.5)
    out = tmp_path / "worse.airlock"
    r = run_airlock("build", write_spec(tmp_path, models=[model]), "--key", keyset.release_key,
                    "-o", out)
    assert r.returncode == 4, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert re.search(r"health check of model 'classifier' failed: accuracy 0\.\d+ < min 0\.92 "
                     r"\(on 300 evaluation samples\); nothing was signed or written", line), line
    assert not out.exists()


def test_on_the_host_relative_thresholds_and_providers_are_reported_not_enforced(
        tmp_path: Path, keyset: Keys) -> None:
    d = tmp_path / "m"
    model = eval_model(d, samples=300,
                       metrics={"accuracy": {"min": 0.9, "min_delta": -0.01}},
                       health={"providers": ["OpenVINOExecutionProvider",
                                             "CPUExecutionProvider"]})
    spec = write_spec(tmp_path, models=[model])
    r = run_airlock("check", spec, "--json")
    assert r.returncode == 0, r.stderr
    (m,) = json.loads(r.stdout)["models"]
    assert m["ok"] and m["evaluation"]["samples"] == 300
    assert m["evaluation"]["metrics"]["accuracy"] > 0.9
    assert ("accuracy min_delta not applied: the host knows no running release to compare with"
            in m["note"])
    assert m["over_budget"] == ("execution provider OpenVINOExecutionProvider is not available "
                                "here (checked on CPUExecutionProvider); the device must have it")
    assert m["providers"]["missing"] == ["OpenVINOExecutionProvider"]
    human = run_airlock("check", spec).stdout
    assert re.search(r"\n  evaluation: accuracy 0\.\d+ on 300 samples \(", human), human

    strict = run_airlock("check", spec, "--enforce-budgets")
    assert strict.returncode == 4
    assert "execution provider OpenVINOExecutionProvider is not available" in strict.stderr


def test_a_drift_reference_breaking_the_contract_is_refused(
        kit_dir: Path, tmp_path: Path, keyset: Keys) -> None:
    d = tmp_path / "m"
    model = eval_model(d, samples=300, contract={"x": {"shape": ["batch", 16], "max": 50}},
                       health={"reference": str(d / "ref.npz")})
    x = np.load(d / "eval_data.npz")["x"][:100]
    x[7, 2] = 99.0
    np.savez(d / "ref.npz", x=x)
    message = _refused(tmp_path, keyset, model)
    assert ("field 'models[0].health.reference': breaks the input contract: input 'x': 1 "
            "value(s) > max 50 (first: row 7, x[7, 2] = 99") in message


def test_diff_names_a_changed_evaluation_or_contract(tmp_path: Path, keyset: Keys) -> None:
    d = tmp_path / "m"
    model = eval_model(d, samples=300)
    old = build(write_spec(tmp_path, models=[model]), tmp_path / "old.airlock",
                [keyset.release_key])
    model["evaluate"]["metrics"] = {"accuracy": {"min": 0.93}}
    model["inputs_contract"] = {"x": {"dtype": "float32"}}
    new = build(write_spec(tmp_path, sequence=2, models=[model]), tmp_path / "new.airlock",
                [keyset.release_key])
    r = run_airlock("diff", old, new)
    assert r.returncode == 0, r.stderr
    assert "~ classifier: " in r.stdout and "evaluation changed; input contract changed" in r.stdout
