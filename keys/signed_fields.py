"""What each field of a signed release may hold: one rule per field, used by both sides.

The bundler checks a spec against these rules before it signs (a broken rule
is exit 2, naming the spec field and its line); the agent checks signed
metadata against the same rules before it uses any of it (exit 3, naming the
release field). So the bundler never signs what a device would refuse, and a
device never acts on what the bundler would not have signed::

    try:
        runs = valid_runs(raw)
    except FieldError as e:
        # device:  FormatError(f"release field '{e.where('airlock.models[0].health.runs')}' {e}")
        # bundler: SpecError(spec, e.where("models[0].health.runs"), str(e), line)
        ...

The rules:

* names (release, model, ring, model and data file names) are plain names:
  letters, digits, ``.``, ``_``, ``-``, no leading dot, at most
  ``MAX_NAME_LENGTH``; a model's files in ``models/NAME/`` never collide with
  each other or with the golden data linked beside them;
* signed text carries no control characters (NUL, ESC, DEL, C1), no lone
  surrogates (not UTF-8) and no bidirectional overrides (Trojan Source,
  CVE-2021-42574); only multi-line text (hook commands, flag string values)
  may hold TAB and LF;
* numbers are finite and not negative (``timeout_s`` above zero), integers
  within ``MAX_JSON_INTEGER``; the sequence is in 1..``MAX_SEQUENCE``,
  ``runs`` in 1..``MAX_HEALTH_RUNS``;
* any other value (flags) is plain JSON: objects with text keys, lists,
  text, booleans, null, bounded integers, finite numbers, nested at most
  ``MAX_JSON_DEPTH`` deep. Dates, binary data and sets, which YAML can write,
  are refused rather than converted.

Messages never quote the offending text, so no control character reaches a
terminal through an error.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Sequence
from typing import Any

from airlock.limits import (
    MAX_HEALTH_RUNS,
    MAX_JSON_DEPTH,
    MAX_JSON_INTEGER,
    MAX_NAME_LENGTH,
    MAX_SEQUENCE,
)

__all__ = [
    "DRIFT_REFERENCE_FILE",
    "EVAL_DATA_FILE",
    "EVAL_LABELS_FILE",
    "FLAGS_DEPTH",
    "GOLDEN_INPUTS_FILE",
    "GOLDEN_OUTPUTS_FILE",
    "FieldError",
    "is_plain_name",
    "valid_command",
    "valid_flags",
    "valid_json",
    "valid_line",
    "valid_model_files",
    "valid_name",
    "valid_number",
    "valid_runs",
    "valid_sequence",
    "valid_unique",
]

#: The agent links a model's golden data under these names beside the model
#: file (``models/NAME/``), so no model or data file may take them.
GOLDEN_INPUTS_FILE = "inputs.npz"
GOLDEN_OUTPUTS_FILE = "outputs.npz"
DRIFT_REFERENCE_FILE = "reference.npz"
#: Likewise the evaluation set and its labels (``evaluate:``, keys.evaluation_fields).
EVAL_DATA_FILE = "eval_data.npz"
EVAL_LABELS_FILE = "eval_labels.npz"

#: Nesting of the ``flags`` object inside the signed ``airlock`` section (and
#: inside a spec): the depth bound counts from the section, on both sides.
FLAGS_DEPTH = 1

_PLAIN_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}\Z")
# C0 and C1 controls, DEL, lone surrogates, bidirectional embeddings/overrides/isolates.
_NOT_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_NOT_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


class FieldError(ValueError):
    """A value breaks a field rule; ``at`` says where inside it (``("a", 2)`` is ``.a[2]``)."""

    def __init__(self, message: str, at: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.at = at

    def where(self, field: str) -> str:
        """``field`` followed by the place inside it that breaks the rule."""
        return field + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.at)


def is_plain_name(text: object) -> bool:
    """The one naming rule: letters, digits, ``.``, ``_``, ``-``; no leading dot; bounded."""
    return isinstance(text, str) and _PLAIN_NAME.match(text) is not None


def valid_name(value: object) -> str:
    if not is_plain_name(value):
        raise FieldError(
            f"is not a plain name (letters, digits, '.', '_' or '-', not starting with '.', "
            f"at most {MAX_NAME_LENGTH} characters)"
        )
    assert isinstance(value, str)
    return value


def _text(value: object, forbidden: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str):
        raise FieldError("must be text")
    bad = forbidden.search(value)
    if bad is not None:
        char = ord(bad.group())
        kind = ("a lone surrogate (not UTF-8)" if 0xD800 <= char <= 0xDFFF
                else "a bidirectional override" if char >= 0x2000 else "a control character")
        raise FieldError(f"holds {kind} (U+{char:04X}) at position {bad.start()}; {what}")
    return value


def valid_line(value: object) -> str:
    """One line of signed text: a version, an image reference, a URL, a flag name."""
    return _text(value, _NOT_IN_LINE, "signed text may not carry control characters")


def valid_command(value: object) -> str:
    """Multi-line signed text (a hook command, a flag's text value): TAB and LF allowed."""
    return _text(value, _NOT_IN_TEXT,
                 "signed text may not carry control characters other than tab and newline")


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError("must be an integer")
    return value


def valid_sequence(value: object) -> int:
    """The release sequence (anti-rollback): a huge one would lock devices out of later releases."""
    n = _integer(value)
    if not 1 <= n <= MAX_SEQUENCE:
        raise FieldError(f"must be between 1 and {MAX_SEQUENCE}")
    return n


def valid_runs(value: object) -> int:
    n = _integer(value)
    if not 1 <= n <= MAX_HEALTH_RUNS:
        raise FieldError(f"must be between 1 and {MAX_HEALTH_RUNS}")
    return n


def valid_number(value: object, *, positive: bool = False) -> float:
    """A finite number, not negative (above zero when ``positive``): tolerances, budgets, windows."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError("must be a number")
    try:
        f = float(value)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise FieldError("must be a finite number")
    if f < 0 or (positive and f == 0):
        raise FieldError("must be more than 0" if positive else "must not be negative")
    return f


def valid_json(value: Any, depth: int = 0, at: tuple[str | int, ...] = ()) -> Any:
    """A plain JSON value (see the module docstring), ``depth`` levels inside the signed section."""
    if depth > MAX_JSON_DEPTH:
        raise FieldError(f"is nested deeper than {MAX_JSON_DEPTH} levels", at)
    try:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if abs(value) > MAX_JSON_INTEGER:
                raise FieldError(f"is an integer beyond ±{MAX_JSON_INTEGER}; quote it as text")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise FieldError("must be a finite number")
            return value
        if isinstance(value, str):
            return valid_command(value)
    except FieldError as e:
        raise FieldError(str(e), at) from None
    if isinstance(value, list):
        for i, item in enumerate(value):
            valid_json(item, depth + 1, (*at, i))
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FieldError(f"has a key that is not text ({_kind(key)}); quote it", at)
            try:
                valid_line(key)
            except FieldError as e:
                raise FieldError(f"has a key that {e}", at) from None
            valid_json(item, depth + 1, (*at, key))
        return value
    raise FieldError(f"is {_kind(value)}, which JSON cannot carry", at)


def _kind(value: object) -> str:
    if isinstance(value, datetime.date):
        return "a date (quote it to make it text)"
    if isinstance(value, bytes | bytearray):
        return "binary data"
    if isinstance(value, set | frozenset):
        return "a set (use a list)"
    if isinstance(value, tuple):
        return "a list of pairs (use a mapping)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def valid_flags(value: object) -> dict[str, Any]:
    """Feature flags: an object of plain JSON values."""
    if not isinstance(value, dict):
        raise FieldError("must be a mapping of flag name to value")
    valid_json(value, FLAGS_DEPTH)
    return value


def valid_unique(names: Sequence[str], what: str) -> None:
    """Names that become directories side by side (models) must differ."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise FieldError(f"lists {what} {name!r} twice", (i,))
        seen.add(name)


def valid_model_files(file_name: object, data_names: Sequence[object] = ()) -> None:
    """The files of ``models/NAME/``: the model, its external data, golden and evaluation data.

    All are plain names and distinct, so linking one never replaces another.
    """
    taken = {GOLDEN_INPUTS_FILE: "golden inputs", GOLDEN_OUTPUTS_FILE: "golden outputs",
             DRIFT_REFERENCE_FILE: "the drift reference",
             EVAL_DATA_FILE: "evaluation set", EVAL_LABELS_FILE: "evaluation labels"}
    for i, name in enumerate([file_name, *data_names]):
        what = "model file name" if i == 0 else "external data file name"
        try:
            valid_name(name)
        except FieldError as e:
            raise FieldError(f"{what} {e}") from None
        assert isinstance(name, str)
        if name in taken:
            raise FieldError(
                f"{what} {name!r} is the name of the {taken[name]} the agent links beside the "
                "model; rename the file"
            )
        taken[name] = "model file" if i == 0 else "external data file"
