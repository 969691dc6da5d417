"""Evaluation, contract and runtime fields: one rule per field, refused alike at build and on devices.

Each bad value is written into a spec (``load_spec`` refuses it: exit 2,
naming the field and its line) and into a release signed by the real key
(the device's ``TrustRoot.verify_release`` refuses it: exit 3, naming the
same field). Both answers come from ``keys/evaluation_fields.py``. Then the
device's own config (``agent.yaml`` ``runtime``) under the same rules.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.runtime import DeviceRuntime
from airlock.errors import FormatError, SpecError, UsageError
from bundler.build.spec import load_spec
from keys.trust import TrustRoot
from scripts import modelkit
from tests.support.kit import Kit
from tests.support.spec import spec_doc, write_spec
from tests.support.tarsurgery import sign_dict

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return modelkit.make(tmp_path_factory.mktemp("model") / "m").parent


def _model(d: Doc) -> Doc:
    model: Doc = d.get("airlock", d)["models"][0]
    return model


def _evaluate(metrics: Any = None, **fields: Any) -> Callable[[Doc], None]:
    """Give the model an evaluation of its golden files: paths in a spec, blobs in a release."""
    def edit(d: Doc) -> None:
        m = _model(d)
        files = {"data": m["health"]["inputs"], "labels": m["health"]["outputs"]}
        m["evaluate"] = {**files, "batch": 8,
                         "metrics": {"accuracy": {"min": 0.9}} if metrics is None else metrics,
                         **fields}
    return edit


def _set(where: str, value: Any) -> Callable[[Doc], None]:
    def edit(d: Doc) -> None:
        m = _model(d)
        if where.startswith("health."):
            m["health"][where[7:]] = value
        else:
            m[where] = value
    return edit


# (id, field below models[0] (spec) / airlock.models[0] (release), edit, message);
# the release field is None where a signed release cannot carry the value (JSON has no NaN).
RULES: list[tuple[str, str, bool, Callable[[Doc], None], str]] = [
    ("metric-unknown", "evaluate.metrics.acuracy", True,
     _evaluate({"acuracy": {"min": 0.9}}), "is not a metric; classification: accuracy"),
    ("metric-mixed", "evaluate.metrics", True,
     _evaluate({"accuracy": {"min": 0.9}, "mae": {"max": 0.1}}),
     "mixes classification and regression metrics"),
    ("metric-none", "evaluate.metrics", True, _evaluate({}), "names no metric"),
    ("metric-no-rule", "evaluate.metrics.accuracy", True, _evaluate({"accuracy": {}}),
     "at least one of min, max, min_delta, max_delta"),
    ("metric-rule-typo", "evaluate.metrics.accuracy.minimum", True,
     _evaluate({"accuracy": {"minimum": 0.9}}), "unknown field"),
    ("metric-bound-text", "evaluate.metrics.accuracy.min", True,
     _evaluate({"accuracy": {"min": "0.9"}}), "must be a number"),
    ("metric-nan", "evaluate.metrics.accuracy.min", False,
     _evaluate({"accuracy": {"min": float("nan")}}), "must be a finite number"),
    ("metric-min-above-max", "evaluate.metrics.accuracy", True,
     _evaluate({"accuracy": {"min": 0.9, "max": 0.8}}), "min is above max"),
    ("top-k-huge", "evaluate.metrics.top500_accuracy", True,
     _evaluate({"top500_accuracy": {"min": 0.9}}), "for k up to 100"),
    ("class-beyond", "evaluate.metrics.f1[5000]", True, _evaluate({"f1[5000]": {"min": 0.5}}),
     "classes are numbered 0..1023"),
    ("metric-name-escape", "evaluate.metrics", True,
     _evaluate({"accuracy\x1b[2J": {"min": 0.5}}), "control character (U+001B)"),
    ("batch-zero", "evaluate.batch", True, _evaluate(batch=0), "between 1 and 65536"),
    ("max-samples-huge", "evaluate.max_samples", True, _evaluate(max_samples=10**8),
     "between 1 and 10000000"),
    ("contract-dtype", "inputs_contract.x.dtype", True,
     _set("inputs_contract", {"x": {"dtype": "float8"}}), "must be one of float16"),
    ("contract-dim-name", "inputs_contract.x.shape[0]", True,
     _set("inputs_contract", {"x": {"shape": ["../batch", 16]}}),
     "a named dimension must be a plain name"),
    ("contract-dim-negative", "inputs_contract.x.shape[1]", True,
     _set("inputs_contract", {"x": {"shape": ["batch", -1]}}), "between 0 and"),
    ("contract-values-float", "inputs_contract.x.values", True,
     _set("inputs_contract", {"x": {"dtype": "float32", "values": [1, 2]}}),
     "for integer and bool inputs"),
    ("contract-values-twice", "inputs_contract.x.values[2]", True,
     _set("inputs_contract", {"x": {"dtype": "int64", "values": [1, 2, 1]}}), "lists 1 twice"),
    ("contract-min-above-max", "inputs_contract.x", True,
     _set("inputs_contract", {"x": {"min": 5, "max": -5}}), "min is above max"),
    ("contract-nan-text", "inputs_contract.x.nan", True,
     _set("inputs_contract", {"x": {"nan": "yes"}}), "must be true or false"),
    ("contract-typo", "inputs_contract.x.maximum", True,
     _set("inputs_contract", {"x": {"maximum": 5}}), "unknown field"),
    ("contract-input-escape", "inputs_contract", True,
     _set("inputs_contract", {"x\x1b]0;": {"min": 0}}), "control character (U+001B)"),
    ("session-level", "health.session.graph_optimization_level", True,
     _set("health.session", {"graph_optimization_level": "max"}),
     "must be one of disable, basic, extended, all"),
    ("session-threads", "health.session.intra_op_threads", True,
     _set("health.session", {"intra_op_threads": 1000}), "between 0 and 256"),
    ("session-typo", "health.session.threads", True, _set("health.session", {"threads": 2}),
     "unknown field"),
    ("providers-twice", "health.providers[1]", True,
     _set("health.providers", ["CPUExecutionProvider", "CPUExecutionProvider"]),
     "lists 'CPUExecutionProvider' twice"),
    ("fallback-text", "health.provider_fallback", True, _set("health.provider_fallback", "yes"),
     "must be true or false"),
]


@pytest.mark.parametrize("rule", RULES, ids=[r[0] for r in RULES])
def test_build_and_device_refuse_by_one_rule(
    rule: tuple[str, str, bool, Callable[[Doc], None], str],
    kit: Kit, model_dir: Path, tmp_path: Path,
) -> None:
    _id, field, on_device, edit, message = rule
    doc = spec_doc(model_dir)
    edit(doc)
    spec = write_spec(tmp_path, text=yaml.safe_dump(doc, allow_unicode=True),
                      file_name="airlock.yaml")
    with pytest.raises(SpecError) as built:
        load_spec(spec)
    assert built.value.exit_code == 2
    assert re.match(rf"{re.escape(str(spec))}:\d+: field '{re.escape('models[0].' + field)}': ",
                    str(built.value)), str(built.value)
    assert message in str(built.value)
    if not on_device:
        return
    signed = kit.signed()
    edit(signed)
    trust = TrustRoot.from_bytes(kit.trust_path.read_bytes())
    with pytest.raises(FormatError) as refused:
        trust.verify_release(sign_dict(signed, [kit.release]))
    assert refused.value.exit_code == 3
    assert f"release field 'airlock.models[0].{field}'" in str(refused.value), str(refused.value)
    assert message in str(refused.value)


def test_a_good_evaluation_and_contract_read_back_as_signed(kit: Kit) -> None:
    signed = kit.signed()
    _evaluate({"accuracy": {"min": 0.9, "min_delta": -0.01}, "top3_accuracy": {"min": 0.99}},
              max_samples=100)(signed)
    _set("inputs_contract", {"x": {"dtype": "float32", "shape": ["batch", 16], "min": -8,
                                   "max": 8, "nan": True}})(signed)
    _set("health.session", {"graph_optimization_level": "basic", "intra_op_threads": 2})(signed)
    _set("health.provider_fallback", True)(signed)
    trust = TrustRoot.from_bytes(kit.trust_path.read_bytes())
    (m,) = trust.verify_release(sign_dict(copy.deepcopy(signed), [kit.release])).release.models
    assert m.evaluation is not None and m.evaluation.max_samples == 100
    assert [t.describe() for t in m.evaluation.metrics] == [
        "accuracy >= 0.9, accuracy >= running - 0.01", "top3_accuracy >= 0.99"]
    assert [r.describe() for r in m.contract] == ["float32 [batch, 16] in [-8, 8] NaN allowed"]
    assert m.health.provider_fallback and m.health.session.intra_op_threads == 2
    # The evaluation files are linked beside the model under their fixed names.
    assert {"eval_data.npz", "eval_labels.npz"} <= {n for n, _ in m.linked_files()}


@pytest.mark.parametrize("runtime, message", [
    ({"providers": []}, "'runtime.providers' must be a non-empty list"),
    ({"providers": ["A", "A"]}, "'runtime.providers[1]' lists 'A' twice"),
    ({"provider_fallback": 1}, "'runtime.provider_fallback' must be true or false"),
    ({"session": {"inter_op_threads": -1}}, "'runtime.session.inter_op_threads' must be between"),
    ({"threads": 2}, "'runtime.threads' is not a setting"),
    ("CPU", "'runtime' must be a mapping"),
])
def test_the_device_config_follows_the_same_rules(runtime: Any, message: str) -> None:
    with pytest.raises(UsageError) as e:
        DeviceRuntime.from_config(runtime, "agent.yaml")
    assert e.value.exit_code == 2 and message in str(e.value), str(e.value)
