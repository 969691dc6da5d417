"""A carried model's CycloneDX 1.6 model card: what it is, what it takes, how it is checked.

``bundler.build.sbom`` puts it on the model's ``machine-learning-model`` component::

    card = model_card(entry, contents.blobs[entry.blob].open)
    card["modelParameters"]["inputs"]      # [{"format": "x: float32[1, 4]"}]
    card["properties"]                     # format, opset, producer, goldens, budgets, contract

cyclonedx-python-lib 11 has no model-card class, so the card is the schema's
JSON object (``definitions.modelCard`` of the bom-1.6 schema the library
bundles), set on the component the library wrote; the whole document is then
validated against that schema (tests/bundler/test_sbom.py). Facts:

* format, ONNX IR version, opsets, producer: the ModelProto's top-level
  fields, read from the wire format with the graph seeked past (no ``onnx``
  on the host, and a model of any size costs a few reads);
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

__all__ = ["model_card"]


def _prop(name: str, value: object) -> dict[str, str]:
    return {"name": f"airlock:{name}", "value": str(value)}


def _varint(f: IO[bytes]) -> int | None:
    value, shift = 0, 0
    while shift < 64:
        b = f.read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
    return None


def _fields(f: IO[bytes], end: int, keep: frozenset[int]) -> list[tuple[int, int | bytes]]:
    """Top-level protobuf fields up to offset ``end``: varints, and bytes of those in ``keep``.

    Others are seeked past (a model's graph and its weights are never read).
    """
    out: list[tuple[int, int | bytes]] = []
    while f.tell() < end:
        tag = _varint(f)
        if tag is None:
            break
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            v = _varint(f)
            if v is None:
                break
            out.append((number, v))
        elif wire == 2:
            n = _varint(f)
            if n is None:
                break
            if number in keep and n <= 4096:
                out.append((number, f.read(n)))
            else:
                f.seek(n, 1)
        elif wire in (1, 5):
            f.seek(8 if wire == 1 else 4, 1)
        else:
            break
    return out


def _onnx_facts(open_model: Callable[[], IO[bytes]], size: int) -> list[dict[str, str]]:
    """IR version, opsets and producer from the ModelProto's top-level fields."""
    import io

    try:
        with open_model() as f:
            top = _fields(f, size, frozenset({2, 3, 8}))
    except OSError:
        return []
    props, producer = [], ["", ""]
    for number, value in top:
        if number == 1 and isinstance(value, int):
            props.append(_prop("ir_version", value))
        elif number in (2, 3) and isinstance(value, bytes):
            producer[number - 2] = value.decode("utf-8", "replace")
        elif number == 8 and isinstance(value, bytes):
            opset = dict(_fields(io.BytesIO(value), len(value), frozenset({1})))
            domain = opset.get(1, b"")
            name = domain.decode("utf-8", "replace") if isinstance(domain, bytes) else ""
            props.append(_prop(f"opset.{name or 'ai.onnx'}", opset.get(2, "?")))
    if producer[0]:
        props.append(_prop("producer", " ".join(p for p in producer if p)))
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
