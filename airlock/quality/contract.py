"""Input contracts: what data a model's inputs may hold, checked at build and on the device.

A model may declare, per input, a dtype, a shape whose dynamic dimensions
have names, a value range, whether NaN and infinities are allowed, and for
categorical inputs the allowed values (``inputs_contract:`` in the spec,
docs/HEALTH.md)::

    rules = [InputRule("x", dtype="float32", shape=("batch", 16), min=-8.0, max=8.0),
             InputRule("kind", dtype="int64", shape=("batch",), values=(0, 1, 2))]
    check_signature(rules, {"x": ("float32", ("N", 16)), "kind": ("int64", ("N",))})  # [] : fits
    check = ContractCheck(rules)
    check.shapes({"x": (np.dtype("float32"), (32, 16)), "kind": (np.dtype("int64"), (32,))})
    check.rows({"x": x_rows, "kind": kind_rows}, start=0)     # one batch of a streamed file
    check.violations[0].describe()   # "input 'x': 3 value(s) > max 8 (first: row 12, x[12, 3] = 9.5)"
    check.counts()                   # {"x": {"max": 3}}

A shape describes one feed of the model: fixed dimensions are integers, a
named one may take any size but the same size wherever the name recurs in
the same feed (``[batch, seq]`` and ``[batch, seq]``). Files that stack
samples on axis 0 (drift references, dropped samples: ``ContractCheck(rules,
stacked=True)``) may hold any number of rows when the contract's first
dimension is the model's fixed batch (``[1, 16]``). Range checks look at
finite values; NaN and infinities are their own rules and are refused unless
``nan: true`` / ``inf: true``. ``values`` is for integer and boolean inputs.

The bundler checks the model's own signature (names, dtypes, ranks, fixed
dimensions) and the golden and evaluation data against the contract before
it signs (exit 2 naming input and rule); the agent counts violations in the
samples an application drops (``airlock-agent check``). Imports only the
standard library and numpy, like its siblings the health child loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DTYPES", "ONNX_DTYPES", "ContractCheck", "InputRule", "Violation", "check_signature"]

#: The dtypes a contract may name (numpy's names); ONNX Runtime takes all of them.
DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64", "bool")

#: ONNX ``TensorProto.DataType`` codes (onnx/onnx.proto) of those dtypes, for the model's signature.
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
               7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32",
               13: "uint64"}

Dim = int | str


@dataclass(frozen=True)
class InputRule:
    """The contract of one model input; ``None`` leaves that aspect free."""

    name: str
    dtype: str | None = None
    shape: tuple[Dim, ...] | None = None
    min: float | None = None
    max: float | None = None
    nan: bool = False
    inf: bool = False
    values: tuple[int, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.dtype is not None:
            out["dtype"] = self.dtype
        if self.shape is not None:
            out["shape"] = list(self.shape)
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("nan", "inf"):
            if getattr(self, key):
                out[key] = True
        if self.values is not None:
            out["values"] = list(self.values)
        return out

    def describe(self) -> str:
        """``float32 [batch, 16] in [-8, 8]`` (for inspect)."""
        parts = []
        if self.dtype:
            parts.append(self.dtype)
        if self.shape is not None:
            parts.append("[" + ", ".join(map(str, self.shape)) + "]")
        if self.min is not None or self.max is not None:
            lo = "-inf" if self.min is None else f"{self.min:g}"
            hi = "inf" if self.max is None else f"{self.max:g}"
            parts.append(f"in [{lo}, {hi}]")
        if self.values is not None:
            shown = ", ".join(map(str, self.values[:8])) + (", …" if len(self.values) > 8 else "")
            parts.append(f"one of {{{shown}}}")
        allowed = [w for w, ok in (("NaN", self.nan), ("inf", self.inf)) if ok]
        if allowed:
            parts.append(" and ".join(allowed) + " allowed")
        return " ".join(parts) or "any"


@dataclass
class Violation:
    """Elements of one input that break one rule, with the first of them."""

    input: str
    rule: str  # missing | dtype | rank | shape | min | max | nan | inf | values
    count: int
    says: str  # what breaks the rule; ``{n}`` stands for the count
    first: str = ""  # where the first offending element is

    def describe(self) -> str:
        return f"input {self.input!r}: {self.says.format(n=self.count)}{self.first}"


def check_signature(rules: Sequence[InputRule],
                    inputs: Mapping[str, tuple[str | None, tuple[Dim | None, ...] | None]]
                    ) -> list[str]:
    """What in the contract the model's own inputs contradict: names, dtypes, ranks, fixed dims.

    ``inputs`` maps each graph input to its dtype name (None if not one of
    :data:`ONNX_DTYPES`) and its dims (ints, names, None for unknown; None
    when the model gives no shape).
    """
    problems = []
    for rule in rules:
        if rule.name not in inputs:
            problems.append(f"input {rule.name!r} is in the contract but the model does not take "
                            f"it (its inputs: {', '.join(map(repr, sorted(inputs))) or 'none'})")
            continue
        dtype, dims = inputs[rule.name]
        if rule.dtype is not None and dtype is not None and dtype != rule.dtype:
            problems.append(f"input {rule.name!r}: the contract says dtype {rule.dtype}, "
                            f"the model takes {dtype}")
        if rule.shape is None or dims is None:
            continue
        if len(dims) != len(rule.shape):
            problems.append(f"input {rule.name!r}: the contract says rank {len(rule.shape)} "
                            f"{_dims(rule.shape)}, the model takes rank {len(dims)} {_dims(dims)}")
            continue
        for i, (want, have) in enumerate(zip(rule.shape, dims, strict=True)):
            if isinstance(want, int) and isinstance(have, int) and want != have:
                problems.append(f"input {rule.name!r}: dimension {i} is {want} in the contract, "
                                f"{have} in the model")
    return problems


def _dims(dims: Sequence[Dim | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


@dataclass
class ContractCheck:
    """Violations found so far in one stream of feeds (a file's batches, or several files)."""

    rules: Sequence[InputRule]
    violations: list[Violation] = field(default_factory=list)
    # Axis 0 stacks samples (drift references, dropped samples): a fixed first dimension in
    # the contract is then the model's own batch ([1, 16] of a batch-1 export), not a bound
    # on how many samples a file holds.
    stacked: bool = False
    _by_key: dict[tuple[str, str], Violation] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for v in self.violations:
            out.setdefault(v.input, {})[v.rule] = v.count
        return out

    def _add(self, name: str, rule: str, count: int, says: str, first: str = "") -> None:
        key = (name, rule)
        if key in self._by_key:
            self._by_key[key].count += count
            return
        v = Violation(name, rule, count, says.replace("{", "{{").replace("}", "}}")
                      if "{n}" not in says else says, first)
        self._by_key[key] = v
        self.violations.append(v)

    def shapes(self, feed: Mapping[str, tuple[Any, tuple[int, ...]]]) -> None:
        """Check one feed's dtypes and shapes (``{name: (numpy dtype, shape)}``), no values."""
        bound: dict[str, tuple[int, str]] = {}
        for rule in self.rules:
            if rule.name not in feed:
                self._add(rule.name, "missing", 1, "is in the contract but not in the data")
                continue
            dtype, shape = feed[rule.name]
            if rule.dtype is not None and str(dtype) != rule.dtype:
                self._add(rule.name, "dtype", 1, f"is {dtype}, the contract says {rule.dtype}")
            if rule.shape is None:
                continue
            if len(shape) != len(rule.shape):
                self._add(rule.name, "rank", 1, f"has shape {list(shape)}, the contract says "
                          f"rank {len(rule.shape)} {_dims(rule.shape)}")
                continue
            for i, (want, have) in enumerate(zip(rule.shape, shape, strict=True)):
                if i == 0 and self.stacked and isinstance(want, int):
                    continue  # the sample axis
                if isinstance(want, int) and want != have:
                    self._add(rule.name, "shape", 1, f"has shape {list(shape)}: dimension {i} "
                              f"is {have}, the contract says {want}")
                elif isinstance(want, str):
                    first = bound.setdefault(want, (have, rule.name))
                    if first[0] != have:
                        self._add(rule.name, "shape", 1, f"has {want} = {have} (dimension {i}) "
                                  f"but input {first[1]!r} has {want} = {first[0]}")

    def rows(self, batch: Mapping[str, Any], start: int = 0, source: str = "") -> None:
        """Check the values of one batch of rows (row ``start`` of ``source`` is its first)."""
        import numpy as np

        for rule in self.rules:
            if rule.name not in batch:
                continue
            a = np.asarray(batch[rule.name])
            if a.size == 0:
                continue
            if a.dtype.kind == "f" or a.dtype.kind == "c":
                nan = np.isnan(a)
                inf = np.isinf(a)
                if not rule.nan:
                    self._count(rule, "nan", nan, a, start, source, "{n} NaN value(s), not allowed")
                if not rule.inf:
                    self._count(rule, "inf", inf, a, start, source,
                                "{n} infinite value(s), not allowed")
                finite = ~(nan | inf)
            else:
                finite = None
            with np.errstate(invalid="ignore"):
                if rule.min is not None and a.dtype.kind in "iufb":
                    low = a < rule.min
                    self._count(rule, "min", low if finite is None else low & finite, a, start,
                                source,
                                "{n} value(s) < min " + f"{rule.min:g}")
                if rule.max is not None and a.dtype.kind in "iufb":
                    high = a > rule.max
                    self._count(rule, "max", high if finite is None else high & finite, a, start,
                                source,
                                "{n} value(s) > max " + f"{rule.max:g}")
            if rule.values is not None:
                outside = ~np.isin(a, np.asarray(rule.values))
                shown = ", ".join(map(str, rule.values[:8])) + (", …" if len(rule.values) > 8
                                                                 else "")
                self._count(rule, "values", outside, a, start, source,
                            "{n} value(s) not one of {{" + shown + "}}")

    def _count(self, rule: InputRule, what: str, mask: Any, a: Any, start: int, source: str,
               says: str) -> None:
        """Count ``mask``'s hits; ``says`` words them, ``{n}`` standing for the count."""
        import numpy as np

        n = int(np.count_nonzero(mask))
        if not n:
            return
        at = np.unravel_index(int(np.argmax(mask)), a.shape)
        index = (start + int(at[0]), *(int(i) for i in at[1:]))
        where = f"{rule.name}[{', '.join(map(str, index))}]"
        row = f"{source} row {index[0]}" if source else f"row {index[0]}"
        self._add(rule.name, what, n, says, f" (first: {row}, {where} = {a[at].item()!r})")
