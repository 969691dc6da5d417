"""A carried model's CycloneDX 1.6 model card: what it is, what it takes, how it is checked.

``bundler.build.sbom`` puts it on the model's ``machine-learning-model`` component::

    card = model_card(entry, contents.blobs[entry.blob].open)
    card["modelParameters"]["inputs"]      # [{"format": "x: float32[1, 4]"}]
    card["properties"]                     # format, opset, producer, goldens, budgets, contract

cyclonedx-python-lib 11 has no model-card class, so the card is the schema's
JSON object (``definitions.modelCard`` of the bom-1.6 schema the library
bundles), set on the component the library wrote; the whole document is then
validated against that schema (tests/test_sbom.py). Facts:

* format, ONNX IR version, opsets, producer: from the model's protobuf
  (``onnx.load`` without external data; models over ``MAX_CARD_MODEL_BYTES``
  keep what the wire scan gives: inputs and outputs only);
* inputs and outputs with dtype and shape (``bundler.build.model_check.read_model``);
* the health check's golden data (digests) and budgets;
* the evaluation's metric thresholds (``quantitativeAnalysis``) and its
  labelled set's digests (a ``dataset``), the input contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from bundler.build.model_check import ModelCheckError, read_model
from keys.release import ModelEntry

__all__ = ["MAX_CARD_MODEL_BYTES", "model_card"]

#: ``onnx.load`` holds a model in memory: past this, the card names no opset or producer.
MAX_CARD_MODEL_BYTES = 512 * 1024 * 1024


def _prop(name: str, value: object) -> dict[str, str]:
    return {"name": f"airlock:{name}", "value": str(value)}


def _onnx_facts(open_model: Callable[[], IO[bytes]], size: int) -> list[dict[str, str]]:
    if size > MAX_CARD_MODEL_BYTES:
        return []
    try:
        import onnx

        with open_model() as f:
            proto = onnx.load_model(f, load_external_data=False)
    except Exception:  # not loadable here (no onnx, an exotic model): the card says less
        return []
    props = [_prop("ir_version", proto.ir_version)]
    props += [_prop(f"opset.{o.domain or 'ai.onnx'}", o.version) for o in proto.opset_import]
    if proto.producer_name:
        props.append(_prop("producer", f"{proto.producer_name} {proto.producer_version}".strip()))
    return props


def _io(types: Any, names: frozenset[str]) -> list[dict[str, str]]:
    out = []
    for name in sorted(names):
        dtype, shape = types.get(name, (None, None))
        dims = "?" if shape is None else ", ".join("?" if d is None else str(d) for d in shape)
        out.append({"format": f"{name}: {dtype or 'tensor'}[{dims}]"})
    return out


def model_card(m: ModelEntry, open_model: Callable[[], IO[bytes]]) -> dict[str, Any]:
    """The model card of a carried model (a ``modelCard`` object of CycloneDX 1.6)."""
    props = [_prop("format", "onnx"), _prop("file", m.file_name), *_onnx_facts(open_model, m.size)]
    params: dict[str, Any] = {}
    try:
        facts = read_model(open_model, m.file_name)
        params["inputs"] = _io(facts.types, facts.inputs)
        params["outputs"] = _io(facts.types, facts.outputs)
    except ModelCheckError:
        pass
    h = m.health
    if h.inputs and h.outputs:
        props += [_prop("golden.inputs", h.inputs), _prop("golden.outputs", h.outputs),
                  _prop("golden.rtol", h.rtol), _prop("golden.atol", h.atol)]
    for key in ("runs", "max_p95_ms", "max_memory_mb", "timeout_s"):
        value = getattr(h, key)
        if value is not None:
            props.append(_prop(f"budget.{key}", value))
    props.append(_prop("budget.providers", ",".join(h.providers)))
    for rule in m.contract:
        props.append(_prop(f"contract.{rule.name}", rule.describe()))
    card: dict[str, Any] = {"bom-ref": f"model-card:{m.name}"}
    if m.evaluation is not None:
        ev = m.evaluation
        params["datasets"] = [{
            "type": "dataset", "name": f"{m.name} labelled evaluation set",
            "contents": {"properties": [_prop("data", ev.data), _prop("labels", ev.labels)]}}]
        card["quantitativeAnalysis"] = {"performanceMetrics": [
            {"type": t.metric, "value": t.describe(), "slice": "labelled evaluation set"}
            for t in ev.metrics]}
    if params:
        card["modelParameters"] = params
    card["properties"] = props
    return card
