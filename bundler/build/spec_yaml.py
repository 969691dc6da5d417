"""A spec's YAML read strictly: a bounded shape first, then fields that name their line.

``bundler.build.spec`` reads ``airlock.yaml`` through these: the document's
shape is checked on the text before PyYAML builds anything (alias expansion,
nesting), and every field is read through :class:`Fields`, whose errors name
the field and its line::

    check_shape(path, text)
    top = Fields(path, node, "")          # node: the composed YAML mapping
    name = top.get("name", str)           # SpecError: "airlock.yaml:3: field 'name' …"
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from airlock.errors import SpecError
from airlock.limits import MAX_JSON_DEPTH, MAX_SPEC_ALIAS_EXPANSION
from keys.signed_fields import (
    FieldError,
    valid_command,
    valid_line,
    valid_name,
    valid_number,
)

__all__ = ["Fields", "check_shape", "line_of", "node_at", "plain_name", "yaml_error"]

_T = TypeVar("_T")


class Fields:
    """Typed access to one YAML mapping, with the line of every key for errors."""

    def __init__(self, spec: Path, node: yaml.Node, where: str, allowed: set[str]) -> None:
        self.spec, self.where = spec, where
        if not isinstance(node, yaml.MappingNode):
            raise SpecError(str(spec), where or "(top)", "must be a mapping", line_of(node))
        self.line = line_of(node)
        self.nodes: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(str(spec), where or "(top)", "field names must be plain words",
                                line_of(key_node))
            key = key_node.value
            if key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = (f"; did you mean '{near[0]}'?" if near
                        else f"; expected one of: {', '.join(sorted(allowed))}")
                raise SpecError(str(spec), self._name(key), "unknown field" + hint, line_of(key_node))
            if key in self.nodes:
                raise SpecError(str(spec), self._name(key), "given twice", line_of(key_node))
            self.nodes[key] = value_node

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, message: str) -> SpecError:
        node = self.nodes.get(key)
        return SpecError(
            str(self.spec), self._name(key), message, line_of(node) if node else self.line
        )

    def value(self, key: str, types: tuple[type, ...], what: str, default: Any = ...) -> Any:
        if key not in self.nodes:
            if default is ...:
                raise SpecError(str(self.spec), self._name(key), "is required", self.line)
            return default
        try:
            value = yaml.safe_load(yaml.serialize(self.nodes[key]))
        except yaml.YAMLError as e:  # a tag the safe loader refuses (!!python/object, !custom)
            raise self.error(key, f"cannot be read: {getattr(e, 'problem', None) or e}") from None
        except ValueError as e:  # int() of more than 4300 digits (CVE-2020-10735's limit)
            raise self.error(key, f"cannot be read: {str(e).split(';')[0]}") from None
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise self.error(key, f"must be {what}, got {type(value).__name__}")
        return value

    def check(self, key: str, rule: Callable[..., _T], *args: Any, **kw: Any) -> _T:
        """``rule(*args)`` of keys.signed_fields; a broken rule names the field and its line."""
        try:
            return rule(*args, **kw)
        except FieldError as e:
            node = node_at(self.nodes.get(key), e.at)
            raise SpecError(str(self.spec), e.where(self._name(key)), str(e),
                            line_of(node) if node is not None else self.line) from None

    def text(self, key: str, default: Any = ...) -> Any:
        v = self.value(key, (str,), "a string", default)
        return v if v is None else self.check(key, valid_line, v)

    def command(self, key: str, default: Any = ...) -> Any:
        v = self.value(key, (str,), "a string", default)
        return v if v is None else self.check(key, valid_command, v)

    def number(self, key: str, default: Any = ..., *, positive: bool = False) -> Any:
        v = self.value(key, (int, float), "a number", default)
        return None if v is None else self.check(key, valid_number, v, positive=positive)

    def path(self, key: str, default: Any = ...) -> Path | None:
        v = self.text(key, default)
        if v is None:
            return None
        p = Path(v) if Path(v).is_absolute() else self.spec.parent / v
        if not p.is_file():
            raise self.error(key, f"file {v} does not exist")
        return p

    def sub(self, key: str, allowed: set[str]) -> Fields | None:
        if key not in self.nodes:
            return None
        return Fields(self.spec, self.nodes[key], self._name(key), allowed)

    def items(self, key: str) -> list[yaml.Node]:
        if key not in self.nodes:
            return []
        node = self.nodes[key]
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(key, "must be a list")
        return list(node.value)


def line_of(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def node_at(node: yaml.Node | None, at: tuple[str | int, ...]) -> yaml.Node | None:
    """The node a FieldError's ``at`` points into, as far as it can be followed (for its line)."""
    for part in at:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        elif isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value
                         if isinstance(k, yaml.ScalarNode) and k.value == str(part)), node)
        else:
            break
    return node


def plain_name(f: Fields, key: str) -> str:
    return f.check(key, valid_name, f.value(key, (str,), "a string"))


def yaml_error(path: Path, e: yaml.YAMLError) -> SpecError:
    mark = getattr(e, "problem_mark", None)
    return SpecError(
        str(path),
        "(yaml)",
        f"not valid YAML: {getattr(e, 'problem', None) or e}",
        mark.line + 1 if mark else None,
    )


# Composing and constructing recurse per level: this keeps them far from Python's
# recursion limit, and leaves the field rules (MAX_JSON_DEPTH) to name the field.
MAX_YAML_NESTING = 2 * MAX_JSON_DEPTH


def check_shape(path: Path, text: str) -> None:
    """Bound nesting and alias expansion in one pass over the YAML events, before composing.

    Composing and every later walk recurse into the document and expand
    aliases; here nothing does: a stack of open collections and the
    expanded weight of each anchor finished so far.
    """
    open_weights: list[int] = []
    open_anchors: list[str | None] = []
    anchors: dict[str, int] = {}
    expanded = 0

    def finish(weight: int, anchor: str | None) -> None:
        if anchor is not None:
            anchors[anchor] = weight
        if open_weights:
            open_weights[-1] += weight

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            if len(open_weights) >= MAX_YAML_NESTING:
                raise SpecError(str(path), "(yaml)",
                                f"nests collections more than {MAX_YAML_NESTING} deep "
                                f"(signed values may nest {MAX_JSON_DEPTH})", line)
            open_weights.append(1)
            open_anchors.append(event.anchor)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            finish(open_weights.pop(), open_anchors.pop())
        elif isinstance(event, yaml.ScalarEvent):
            finish(1 + len(event.value), event.anchor)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:  # undefined, or inside the node it names (a loop)
                raise SpecError(str(path), "(yaml)",
                                f"alias *{event.anchor} refers to no finished anchor "
                                "(undefined, or a node containing itself)", line)
            expanded += anchors[event.anchor]
            if expanded > MAX_SPEC_ALIAS_EXPANSION:
                raise SpecError(str(path), "(yaml)",
                                f"aliases expand to more than {MAX_SPEC_ALIAS_EXPANSION} "
                                "characters (billion laughs?); write the values out", line)
            finish(anchors[event.anchor], None)


#: How long a release must stay valid after its build by default: the media
#: takes time to reach the site, and a device refuses an expired release.
