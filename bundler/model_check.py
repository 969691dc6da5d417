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

Only the protobuf of the model is read (``onnx.load`` without its external
data), and of the ``.npz`` files only their zip directory and each array's
header: a large golden file or a compression bomb costs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from keys.signed_fields import FieldError, valid_model_files

__all__ = ["ModelCheckError", "ModelFacts", "check_external_sizes", "check_golden", "read_model"]

Opener = Callable[[], IO[bytes]]


class ModelCheckError(ValueError):
    """A model or its golden data would fail on devices; ``field`` is the spec field below the model
    (``path``, ``health.inputs``, ``health.outputs``), ``""`` for the model entry itself."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ModelFacts:
    inputs: frozenset[str]  # graph inputs a caller must feed (initializers excluded)
    outputs: frozenset[str]
    external: tuple[str, ...]  # external data file names, in order of first use
    needs: Mapping[str, int]  # external file name -> bytes the model reads from it, at least


def read_model(open_model: Opener, file_name: str, field: str = "path") -> ModelFacts:
    """The graph's inputs, outputs and external data files, from the model's protobuf alone."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    try:
        with open_model() as f:
            model = onnx.load_model(f, load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX model
        raise ModelCheckError(field, f"is not an ONNX model: {_first_line(e)}") from None
    graph = model.graph
    if not graph.output:
        raise ModelCheckError(field, "declares no outputs: is it an ONNX model?")
    try:
        valid_model_files(file_name)
    except FieldError as e:
        raise ModelCheckError(field, str(e)) from None
    initializers = {t.name for t in graph.initializer}
    needs: dict[str, int] = {}
    for tensor in _tensors(model):
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        location = str(info.location)
        if location not in needs:
            try:
                valid_model_files(file_name, [*needs, location])
            except FieldError as e:
                raise ModelCheckError(
                    field, f"tensor {tensor.name!r} has external data that cannot ship: {e}"
                ) from None
            needs[location] = 0
        length = int(info.length) if info.length else _nbytes(tensor)
        needs[location] = max(needs[location], int(info.offset or 0) + length)
    return ModelFacts(
        inputs=frozenset(i.name for i in graph.input if i.name not in initializers),
        outputs=frozenset(o.name for o in graph.output),
        external=tuple(needs),
        needs=needs,
    )


def _nbytes(tensor: Any) -> int:
    """Bytes of a tensor's data from its shape and type (when its external data gives no length)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    count = 1
    for d in tensor.dims:
        count *= int(d)
    try:
        return count * int(tensor_dtype_to_np_dtype(tensor.data_type).itemsize)
    except (KeyError, TypeError, ValueError):
        return 0


def _tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of a model: initializers, node attributes, subgraphs, functions."""

    def of_graph(graph: Any) -> Iterator[Any]:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            yield from of_node(node)

    def of_node(node: Any) -> Iterator[Any]:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            sparse = [a.sparse_tensor] if a.HasField("sparse_tensor") else []
            for s in [*sparse, *a.sparse_tensors]:
                yield s.values
                yield s.indices
            if a.HasField("g"):
                yield from of_graph(a.g)
            for g in a.graphs:
                yield from of_graph(g)

    yield from of_graph(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from of_node(node)


def check_external_sizes(facts: ModelFacts, sizes: Mapping[str, int], field: str = "path") -> None:
    """Every external data file is shipped and holds the bytes the model reads from it."""
    for name, need in facts.needs.items():
        if name not in sizes:
            raise ModelCheckError(field, f"needs the external data file {name!r} beside it")
        if sizes[name] < need:
            raise ModelCheckError(
                field, f"reads {need} bytes from external data file {name!r}, "
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
