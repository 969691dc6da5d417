"""Model variants: the signed ``when`` selector of each, and which one a device's facts pick.

A model may come in variants (fp32 for CPUs, int8 for NPUs, one per
architecture). Each variant of the signed release carries a ``when``
selector over the device's facts (``agent.facts``); **the first variant
whose selector matches wins, in signed order**, and ``when: {}`` matches
every device. The bundler checks the rules below before it signs, the
device checks them again as it reads the release (``valid_variants``)::

    when = valid_when({"arch": "aarch64", "labels": {"npu": "hailo"}})
    when            # {"arch": ["arm64"], "labels": {"npu": ["hailo"]}}
    matches(when, {"arch": "arm64", "labels": {"npu": "hailo"}})        # True
    matches({"cuda_capability": ">=8.7"}, {"cuda_capability": "8.6"})   # False

Keys of a selector: ``arch`` and ``os`` (one word or a list: any of them;
``x86_64`` and ``aarch64`` are ``amd64`` and ``arm64``), ``labels`` (each
label equal to the word, or to one of a list), ``providers`` and
``cpu_features`` (every one listed present on the device), and any other
fact by name (``ram_mb``, ``python``, ``onnxruntime``, a fact an operator
stated such as ``cuda_capability``): a word, a list of words (any of them),
or a comparison ``>=8.7``, ``<4096``, ``!=3.10`` (dotted numbers compare as
versions). A fact the device lacks never matches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from keys.signed_fields import FieldError

__all__ = ["ARCH_ALIASES", "canonical", "effective", "matches", "normalize_arch",
           "valid_variants", "valid_when"]

#: Architecture words as the probe or an operator may write them -> the OCI platform word.
ARCH_ALIASES = {"x86_64": "amd64", "x64": "amd64", "aarch64": "arm64", "armv8": "arm64",
                "armv7l": "arm", "i686": "386", "i386": "386"}
_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,63}\Z")
_WORD = re.compile(r"^[A-Za-z0-9_.:/+-]{1,128}\Z")
_COMPARE = re.compile(r"^(>=|<=|==|!=|>|<)\s*([0-9][0-9.]{0,31})\Z")
_SETS = ("providers", "cpu_features")
_MAX_ITEMS = 64


def normalize_arch(word: str) -> str:
    """``x86_64`` -> ``amd64``, ``aarch64`` -> ``arm64``; OCI words stay as they are."""
    w = word.strip().lower()
    return ARCH_ALIASES.get(w, w)


def effective(record: dict[str, Any]) -> dict[str, Any]:
    """The facts a selector sees from a ``facts.json`` record (the device's own, or the one its
    signed inventory carries): probed, overlaid by stated facts, with the labels."""
    probed, stated = record.get("probed"), record.get("stated")
    facts = dict(probed) if isinstance(probed, dict) else {}
    facts.update(stated if isinstance(stated, dict) else {})
    if facts.get("arch") is not None:
        facts["arch"] = normalize_arch(str(facts["arch"]))
    labels = record.get("labels")
    facts["labels"] = dict(labels) if isinstance(labels, dict) else {}
    return facts


def _word(value: Any, where: tuple[str | int, ...]) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FieldError("must be a word or a number", where)
    text = str(value)
    if not (_WORD.match(text) or _COMPARE.match(text)):
        raise FieldError(f"{text[:40]!r} is not a word, a number or a comparison like '>=8.7'",
                         where)
    return text


def _words(value: Any, where: tuple[str | int, ...]) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > _MAX_ITEMS:
        raise FieldError(f"must name 1 to {_MAX_ITEMS} values", where)
    return [_word(v, (*where, i) if isinstance(value, list) else where)
            for i, v in enumerate(items)]


def valid_when(raw: Any, where: tuple[str | int, ...] = ()) -> dict[str, Any]:
    """The selector in canonical form (lists, aliases resolved); FieldError naming the part."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FieldError("must be a mapping of device facts (e.g. {arch: arm64}; {} for any)",
                         where)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise FieldError(f"{str(key)[:40]!r} is not a fact name", where)
        at = (*where, key)
        if key == "labels":
            if not isinstance(value, dict) or not value:
                raise FieldError("must map label names to values", at)
            labels = {}
            for name, v in value.items():
                if not isinstance(name, str) or not _KEY.match(name):
                    raise FieldError(f"{str(name)[:40]!r} is not a label name", at)
                labels[name] = _words(v, (*at, name))
            out[key] = dict(sorted(labels.items()))
        elif key in _SETS:
            out[key] = sorted(set(_words(value, at)))
        elif key == "arch":
            out[key] = [normalize_arch(w) for w in _words(value, at)]
        else:
            out[key] = _words(value, at)
    return dict(sorted(out.items()))


def canonical(when: dict[str, Any]) -> str:
    """One string per meaning: two variants with the same one are ambiguous."""
    return json.dumps(when, sort_keys=True, separators=(",", ":"))


def valid_variants(whens: Sequence[dict[str, Any]], names: Sequence[str], model: str) -> None:
    """Distinct names and selectors, and nothing after a catch-all ``{}``; FieldError naming
    both variants."""
    seen: dict[str, str] = {}
    names_seen: set[str] = set()
    for i, (when, name) in enumerate(zip(whens, names, strict=True)):
        if name in names_seen:
            raise FieldError(f"model '{model}' has two variants named '{name}'")
        names_seen.add(name)
        key = canonical(when)
        if key in seen:
            raise FieldError(f"model '{model}': variants '{seen[key]}' and '{name}' have the same "
                             f"when {key}; the second could never be chosen")
        seen[key] = name
        if not when and i != len(whens) - 1:
            raise FieldError(f"model '{model}': variant '{names[i + 1]}' comes after the "
                             f"catch-all variant '{name}' (when: {{}}) and could never be "
                             "chosen; put the catch-all last")


def _version(text: str) -> tuple[int, ...] | None:
    parts = text.split(".")
    if not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _one(expected: str, actual: Any) -> bool:
    if actual is None or isinstance(actual, list | dict):
        return False
    have = str(actual)
    m = _COMPARE.match(expected)
    if m is None:
        return have == expected
    op, want = m.groups()
    a, b = _version(have), _version(want)
    if a is None or b is None:
        return op == "!=" if a is None and have != want else False
    width = max(len(a), len(b))
    a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b, "==": a == b,
            "!=": a != b}[op]


def matches(when: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Whether a device with ``facts`` (``agent.facts.effective``) is one ``when`` selects."""
    for key, want in when.items():
        if key == "labels":
            labels = facts.get("labels") or {}
            if not all(any(_one(v, labels.get(name)) for v in values)
                       for name, values in want.items()):
                return False
        elif key in _SETS:
            have = set(facts.get(key) or ())
            if not set(want) <= have:
                return False
        elif key == "arch":
            arch = facts.get("arch")
            if arch is None or normalize_arch(str(arch)) not in want:
                return False
        elif not any(_one(v, facts.get(key)) for v in want):
            return False
    return True
