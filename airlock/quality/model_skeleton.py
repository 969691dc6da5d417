"""An ONNX model's skeleton: its large initializers as external data in its own file.

Loaded by the health child (``_health_child.py``) by absolute path from beside
itself, so it imports only the standard library::

    skeleton = model_skeleton("/releases/v2/models/detector/model.onnx")
    if skeleton is not None:     # None: load the file as it is
        session = ort.InferenceSession(skeleton, opts)   # opts name the model's folder

ONNX Runtime given an ONNX file parses all of it into a ModelProto (one copy of the
weights) and then copies each initializer into its own buffer (a second copy) before it
frees the first: a model whose weights are one big tensor peaks at twice its size. Given
instead a *skeleton* of the model, whose large initializers are ONNX external data that
point at the byte ranges of the same file where their raw_data sits, it maps those ranges
and parses only the small rest: one copy, and a weight no node uses is never read. The
file is not changed and nothing is written; the session computes bit for bit what a
session on the file does (same session options, prepacking included, so the latency the
check reports is the application's). What ONNX Runtime still holds twice is a weight it
prepacks (MatMul, Conv), each one briefly. Only the protobuf wire format is read here
(ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.raw_data = 9,
external_data = 13, data_location = 14); anything unexpected means "load the file as
before", never a failed check.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

__all__ = ["model_skeleton"]

_MIN_MAPPED = 64 * 1024  # smaller initializers stay inline: a map each would cost more


class _NotSkeletal(Exception):
    """The model cannot be loaded as a skeleton; it is loaded from its file instead."""


def _varint(buf: Any, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise _NotSkeletal("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | 0x80 if v else b)
        if not v:
            return bytes(out)


def _fields(buf: Any, start: int, end: int) -> Any:
    """(field number, wire type, field start, payload start, payload end) within buf[start:end]."""
    i = start
    while i < end:
        first = i
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            begin, (_, stop) = i, _varint(buf, i)
        elif wire in (1, 5):
            begin, stop = i, i + (8 if wire == 1 else 4)
        elif wire == 2:
            n, begin = _varint(buf, i)
            stop = begin + n
        else:
            raise _NotSkeletal(f"wire type {wire}")
        if stop > end:
            raise _NotSkeletal("a field runs past its message")
        yield field, wire, first, begin, stop
        i = stop


def _message(field: int, payload: bytes) -> bytes:
    return _uvarint(field << 3 | 2) + _uvarint(len(payload)) + payload


def _skeleton_tensor(buf: Any, start: int, end: int, location: bytes) -> bytes | None:
    """A TensorProto whose raw_data is external data in the model file; None: keep it inline."""
    rest = bytearray()
    raw: tuple[int, int] | None = None
    for field, wire, first, begin, stop in _fields(buf, start, end):
        if field in (13, 14):
            raise _NotSkeletal("the model already has external data")  # ORT maps it itself
        if field == 9 and wire == 2:
            raw = (begin, stop)
        else:
            rest += buf[first:stop]
    if raw is None or raw[1] - raw[0] < _MIN_MAPPED:
        return None
    for key, value in ((b"location", location), (b"offset", str(raw[0]).encode()),
                       (b"length", str(raw[1] - raw[0]).encode())):
        rest += _message(13, _message(1, key) + _message(2, value))
    rest += _uvarint(14 << 3) + _uvarint(1)  # data_location = EXTERNAL
    return bytes(rest)


def _skeleton(buf: Any, location: bytes, limit: int) -> tuple[bytes, int]:
    """The model's bytes with its large initializers made external; and how many bytes moved.

    More than ``limit`` bytes left inline (weights kept as float_data, big Constant
    nodes) would make the skeleton a copy of its own: the file is loaded instead.
    """
    out = bytearray()
    moved = 0
    for field, wire, first, begin, stop in _fields(buf, 0, len(buf)):
        if field != 7 or wire != 2:
            out += buf[first:stop]
            continue
        graph = bytearray()
        for gfield, gwire, gfirst, gbegin, gstop in _fields(buf, begin, stop):
            tensor = (_skeleton_tensor(buf, gbegin, gstop, location)
                      if gfield == 5 and gwire == 2 else None)
            if tensor is None:
                graph += buf[gfirst:gstop]
            else:
                graph += _message(5, tensor)
                moved += gstop - gbegin
            if len(out) + len(graph) > limit:
                raise _NotSkeletal("too much of the model would stay inline")
        out += _message(7, bytes(graph))
        if len(out) > limit:
            raise _NotSkeletal("too much of the model would stay inline")
    return bytes(out), moved


def model_skeleton(path: str) -> bytes | None:
    """The skeleton of the model at ``path`` (see the module docstring); None to load the file as it is."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            # Only field headers are read through the map; the weights' pages are skipped.
            skeleton, moved = _skeleton(m, os.path.basename(path).encode(),
                                        max(16 << 20, len(m) // 4))
    except (OSError, ValueError, _NotSkeletal):
        return None
    return skeleton if moved else None
