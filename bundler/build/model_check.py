"""A model read before it is signed: what it needs beside it, and whether its check compares.

The bundler refuses (exit 2, naming the spec field) what a device's health
check would refuse after the whole bundle had crossed the air gap::

    facts = read_model(lambda: Path("detector.onnx").open("rb"))
    facts.external                        # ('detector.onnx.data',): ONNX external data files
    check_external_sizes(facts, {"detector.onnx.data": 812_000_000})
    check_golden(facts, open_inputs, open_outputs)   # None: no golden data of that kind

* **External data**: a model over 2 GB (protobuf's limit) keeps its weights
  in files beside it, named in the model. Each must be a plain file name
  (no directory, no ``..``, not an absolute path) distinct from the model and
  the golden data, and big enough for every tensor read from it. The bundler
  ships them as layers of the model artifact; the agent links them beside the
  model, and ONNX Runtime reads them from there only.
* **Golden data**: golden outputs that hold no array, or name anything the
  model does not output, would make a check that compares nothing; golden
  inputs must name exactly the model's inputs; no array may hold pickled
  Python objects (devices load without pickle).

Of the model, only the structure of its protobuf is read (a forward scan
that seeks past tensor data), and of the ``.npz`` files only their zip
directory and each array's header: memory stays flat whatever the model's
size, and a compression bomb costs nothing here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO

from airlock.quality.contract import ONNX_DTYPES
from keys.signed_fields import FieldError, valid_model_files

__all__ = ["ModelCheckError", "ModelFacts", "check_external_sizes", "check_golden", "read_model"]

Opener = Callable[[], IO[bytes]]


class ModelCheckError(ValueError):
    """A model or its golden data would fail on devices; ``field`` is the spec field below the model
    (``path``, ``health.inputs``, ``health.outputs``), ``""`` for the model entry itself."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


#: A graph input's or output's dtype (numpy name; None if not a plain tensor type we name)
#: and dims (ints, names, None where unknown; None when the model gives no shape).
Signature = tuple[str | None, tuple[int | str | None, ...] | None]


@dataclass(frozen=True)
class ModelFacts:
    inputs: frozenset[str]  # graph inputs a caller must feed (initializers excluded)
    outputs: frozenset[str]
    external: tuple[str, ...]  # external data file names, in order of first use
    needs: Mapping[str, int]  # external file name -> bytes the model reads from it, at least
    types: Mapping[str, Signature] = field(default_factory=dict)  # inputs and outputs by name


def read_model(open_model: Opener, file_name: str, where: str = "path") -> ModelFacts:
    """The graph's inputs, outputs and external data files, from the model's protobuf alone.

    A forward scan of protobuf's wire format that seeks past tensor data, so
    a model of any size costs a few kilobytes (``onnx.load`` would hold all
    its weights in memory).
    """
    try:
        valid_model_files(file_name)
    except FieldError as e:
        raise ModelCheckError(where, str(e)) from None
    try:
        with open_model() as f:
            scan = _Scan(f)
            scan.model(_size(f))
    except ModelCheckError:
        raise
    except (ValueError, EOFError, OSError) as e:
        raise ModelCheckError(where, f"is not an ONNX model: {_first_line(e)}") from None
    if not scan.outputs:
        raise ModelCheckError(where, "declares no outputs: is it an ONNX model?")
    needs: dict[str, int] = {}
    for tensor in scan.external:
        location = tensor.entries.get("location", "")
        if location not in needs:
            try:
                valid_model_files(file_name, [*needs, location])
            except FieldError as e:
                raise ModelCheckError(
                    where, f"tensor {tensor.name!r} has external data that cannot ship: {e}"
                ) from None
            needs[location] = 0
        needs[location] = max(needs[location], tensor.end())
    return ModelFacts(
        inputs=frozenset(scan.inputs) - frozenset(scan.initializers),
        outputs=frozenset(scan.outputs),
        external=tuple(needs),
        needs=needs,
        types=scan.types,
    )


def _size(f: IO[bytes]) -> int:
    here = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(here)
    return end


@dataclass
class _Tensor:
    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    external: bool = False
    entries: dict[str, str] = field(default_factory=dict)  # external_data: location, offset, length

    def end(self) -> int:
        """The first byte after this tensor's data in its external file."""
        try:
            offset = int(self.entries.get("offset") or 0)
            length = int(self.entries.get("length") or 0)
        except ValueError:
            raise ValueError(f"tensor {self.name!r} has a malformed external data offset or length"
                             ) from None
        if not length:  # the tensor's whole data: its shape times its element size, packed
            length = -(-math.prod(self.dims) * _ELEMENT_BITS.get(self.data_type, 0) // 8)
        return offset + length


# Bits per element of TensorProto.DataType (onnx/onnx.proto); sub-byte types are packed.
# A type not listed is not size-checked here (ONNX Runtime still checks it on the device).
_ELEMENT_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32,
                 13: 64, 14: 64, 15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4,
                 23: 4, 24: 8, 25: 2, 26: 2}


# Protobuf wire types, and how deep graphs may nest (If/Loop bodies) before we stop.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_GRAPH_NESTING = 64


class _Scan:
    """What read_model needs from a ModelProto, read field by field; tensor data is skipped.

    Field numbers are those of onnx/onnx.proto: they are the file format, so
    they never change (tests/hostile/test_external_data.py holds them against
    onnx's own descriptors). Not importing onnx keeps the check fast.
    """

    MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25  # ModelProto.graph, .functions
    GRAPH_NODE, GRAPH_INIT, GRAPH_SPARSE = 1, 5, 15  # GraphProto.node, .initializer, ...
    GRAPH_INPUT, GRAPH_OUTPUT = 11, 12
    NODE_ATTR, FUNCTION_NODE = 5, 7  # NodeProto.attribute, FunctionProto.node
    ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE = (5, 10), (6, 11), (22, 23)  # t/tensors, g/graphs
    SPARSE_PARTS = (1, 2)  # SparseTensorProto.values, .indices
    VALUE_NAME, VALUE_TYPE = 1, 2  # ValueInfoProto.name, .type
    TYPE_TENSOR = 1  # TypeProto.tensor_type
    TENSOR_ELEM, TENSOR_SHAPE = 1, 2  # TypeProto.Tensor.elem_type, .shape
    SHAPE_DIM = 1  # TensorShapeProto.dim
    DIM_VALUE, DIM_PARAM = 1, 2  # TensorShapeProto.Dimension.dim_value, .dim_param
    T_DIMS, T_TYPE, T_NAME, T_EXTERNAL, T_LOCATION = 1, 2, 8, 13, 14  # TensorProto
    EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
    ENTRY_KEY, ENTRY_VALUE = 1, 2  # StringStringEntryProto

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.initializers: list[str] = []
        self.external: list[_Tensor] = []
        self.types: dict[str, Signature] = {}
        self.depth = 0

    # -- the wire format -------------------------------------------------------------------------

    def _varint(self) -> int:
        shift = value = 0
        while True:
            b = self.f.read(1)
            if not b:
                raise EOFError("the model file ends inside a field")
            value |= (b[0] & 0x7F) << shift
            if not b[0] & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("malformed protobuf varint")

    def _fields(self, end: int) -> Iterator[tuple[int, int, int]]:
        """(number, wire type, value) up to ``end``; for a length-delimited field the value is its
        length, and whatever the caller read of it, the next field starts after it."""
        while self.f.tell() < end:
            tag = self._varint()
            number, wire = tag >> 3, tag & 7
            if wire == _VARINT:
                yield number, wire, self._varint()
            elif wire in (_I64, _I32):
                self.f.seek(8 if wire == _I64 else 4, os.SEEK_CUR)
            elif wire == _LEN:
                length = self._varint()
                after = self.f.tell() + length
                if after > end:
                    raise ValueError("a protobuf field runs past its message")
                yield number, wire, length
                self.f.seek(after)
            else:
                raise ValueError(f"unsupported protobuf wire type {wire}")
        if self.f.tell() != end:
            raise ValueError("a protobuf field runs past its message")

    def _text(self, length: int) -> str:
        if length > 1 << 20:
            raise ValueError("a name in the model is longer than 1 MiB")
        return self.f.read(length).decode("utf-8", "replace")

    def _end(self, length: int) -> int:
        return self.f.tell() + length

    # -- the messages ---------------------------------------------------------------------------

    def model(self, end: int) -> None:
        for number, wire, v in self._fields(end):
            if wire != _LEN:
                continue
            if number == self.MODEL_GRAPH:
                self.graph(self._end(v), top=True)
            elif number == self.MODEL_FUNCTIONS:
                self.nodes_of(self._end(v), self.FUNCTION_NODE)

    def graph(self, end: int, top: bool = False) -> None:
        self.depth += 1
        if self.depth > _MAX_GRAPH_NESTING:
            raise ValueError(f"graphs nest deeper than {_MAX_GRAPH_NESTING} levels")
        for number, wire, v in self._fields(end):
            if wire != _LEN:
                continue
            if number == self.GRAPH_NODE:
                self.node(self._end(v))
            elif number == self.GRAPH_INIT:
                name = self.tensor(self._end(v))
                if top:
                    self.initializers.append(name)
            elif number == self.GRAPH_SPARSE:
                self.sparse(self._end(v))
            elif top and number in (self.GRAPH_INPUT, self.GRAPH_OUTPUT):
                name, signature = self.value_info(self._end(v))
                (self.inputs if number == self.GRAPH_INPUT else self.outputs).append(name)
                self.types[name] = signature
        self.depth -= 1

    def nodes_of(self, end: int, node_field: int) -> None:
        for number, wire, v in self._fields(end):
            if wire == _LEN and number == node_field:
                self.node(self._end(v))

    def node(self, end: int) -> None:
        for number, wire, v in self._fields(end):
            if wire == _LEN and number == self.NODE_ATTR:
                self.attribute(self._end(v))

    def attribute(self, end: int) -> None:
        for number, wire, v in self._fields(end):
            if wire != _LEN:
                continue
            if number in self.ATTR_TENSORS:
                self.tensor(self._end(v))
            elif number in self.ATTR_GRAPHS:
                self.graph(self._end(v))
            elif number in self.ATTR_SPARSE:
                self.sparse(self._end(v))

    def sparse(self, end: int) -> None:
        for number, wire, v in self._fields(end):
            if wire == _LEN and number in self.SPARSE_PARTS:
                self.tensor(self._end(v))

    def value_info(self, end: int) -> tuple[str, Signature]:
        """A ValueInfoProto's name and, for a tensor, its dtype and dims."""
        name = ""
        signature: Signature = (None, None)
        for number, wire, v in self._fields(end):
            if wire == _LEN and number == self.VALUE_NAME:
                name = self._text(v)
            elif wire == _LEN and number == self.VALUE_TYPE:
                for n2, w2, v2 in self._fields(self._end(v)):
                    if w2 == _LEN and n2 == self.TYPE_TENSOR:
                        signature = self.tensor_type(self._end(v2))
        return name, signature

    def tensor_type(self, end: int) -> Signature:
        elem: int | None = None
        dims: list[int | str | None] | None = None
        for number, wire, v in self._fields(end):
            if number == self.TENSOR_ELEM and wire == _VARINT:
                elem = v
            elif number == self.TENSOR_SHAPE and wire == _LEN:
                dims = []
                for n2, w2, v2 in self._fields(self._end(v)):
                    if n2 == self.SHAPE_DIM and w2 == _LEN:
                        dim: int | str | None = None
                        for n3, w3, v3 in self._fields(self._end(v2)):
                            if n3 == self.DIM_VALUE and w3 == _VARINT:
                                dim = v3
                            elif n3 == self.DIM_PARAM and w3 == _LEN:
                                dim = self._text(v3) or None
                        dims.append(dim)
        return ONNX_DTYPES.get(elem or 0), None if dims is None else tuple(dims)

    def tensor(self, end: int) -> str:
        """Reads a TensorProto's name, shape, type and external data; returns its name."""
        t = _Tensor()
        for number, wire, v in self._fields(end):
            if number == self.T_NAME and wire == _LEN:
                t.name = self._text(v)
            elif number == self.T_DIMS:
                if wire == _VARINT:
                    t.dims.append(v)
                elif wire == _LEN:  # packed
                    stop = self._end(v)
                    while self.f.tell() < stop:
                        t.dims.append(self._varint())
            elif number == self.T_TYPE and wire == _VARINT:
                t.data_type = v
            elif number == self.T_LOCATION and wire == _VARINT:
                t.external = v == self.EXTERNAL
            elif number == self.T_EXTERNAL and wire == _LEN:
                key = value = ""
                for n2, w2, v2 in self._fields(self._end(v)):
                    if w2 == _LEN and n2 == self.ENTRY_KEY:
                        key = self._text(v2)
                    elif w2 == _LEN and n2 == self.ENTRY_VALUE:
                        value = self._text(v2)
                t.entries[key] = value
        if t.external:
            self.external.append(t)
        return t.name


def check_external_sizes(facts: ModelFacts, sizes: Mapping[str, int], where: str = "path") -> None:
    """Every external data file is shipped and holds the bytes the model reads from it."""
    for name, need in facts.needs.items():
        if name not in sizes:
            raise ModelCheckError(where, f"needs the external data file {name!r} beside it")
        if sizes[name] < need:
            raise ModelCheckError(
                where, f"reads {need} bytes from external data file {name!r}, "
                f"which holds {sizes[name]}"
            )


def check_golden(facts: ModelFacts, open_inputs: Opener | None, open_outputs: Opener | None) -> None:
    """Golden data a device's health check can compare with (see the module docstring)."""
    if open_inputs is not None:
        names = _npz_arrays(open_inputs, "health.inputs")
        missing, extra = sorted(facts.inputs - names), sorted(names - facts.inputs)
        if missing:
            raise ModelCheckError("health.inputs", f"lacks model input(s) {_list(missing)}")
        if extra:
            raise ModelCheckError(
                "health.inputs",
                f"names {_list(extra)}, which the model does not take "
                f"(its inputs: {_list(sorted(facts.inputs)) or 'none'})",
            )
    if open_outputs is not None:
        names = _npz_arrays(open_outputs, "health.outputs")
        if not names:
            raise ModelCheckError(
                "health.outputs",
                "holds no array: the health check would compare nothing; save the model's "
                "outputs by name (numpy.savez(path, OUTPUT_NAME=array))",
            )
        unknown = sorted(names - facts.outputs)
        if unknown:
            raise ModelCheckError(
                "health.outputs",
                f"names {_list(unknown)}, which the model does not output "
                f"(its outputs: {_list(sorted(facts.outputs))})",
            )


def _npz_arrays(open_file: Opener, field: str) -> frozenset[str]:
    """The array names of an ``.npz``, as numpy.load names them; each array's header is read."""
    import zipfile

    import numpy as np

    try:
        with open_file() as f:
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ModelCheckError(field, "is a single array (.npy), not an .npz archive")
            with loaded as npz:
                archive = npz.zip
                assert archive is not None  # open until the with block ends
                for name in npz.files:
                    member = name + ".npy" if name + ".npy" in archive.namelist() else name
                    with archive.open(member) as m:
                        version = np.lib.format.read_magic(m)
                        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0)
                        _shape, _fortran, dtype = read_header(m)
                    if dtype.hasobject:
                        raise ModelCheckError(
                            field, f"array {name!r} holds Python objects, which devices do not "
                            "unpickle; save plain numeric arrays"
                        )
                return frozenset(npz.files)
    except ModelCheckError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ModelCheckError(field, f"is not an .npz file numpy can read: {_first_line(e)}") from None


def _list(names: list[str]) -> str:
    return ", ".join(map(repr, names))


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]
