"""The built-in inventory reader: Ansible YAML or INI, host ranges, ``group_vars/`` and ``host_vars/``.

It prints what ``ansible-inventory -i INV --list`` would, without Ansible::

    doc = read_inventory(Path("site.yml"))
    doc["_meta"]["hostvars"]["cam01.north"]["ansible_user"]   # -> "op"

A file named ``*.yml``, ``*.yaml`` or ``*.json`` is YAML (as Ansible's yaml
plugin decides); any other file is INI. Variables files beside the inventory
are read as Ansible's ``host_group_vars`` plugin reads them:
``group_vars/NAME``, ``NAME.yml``, ``NAME.yaml``, ``NAME.json``, or every such
file under the directory ``group_vars/NAME/`` in name order (same for
``host_vars/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from airlock.errors import UsageError
from airlock.limits import MAX_INVENTORY_BYTES
from bundler.fleet.inventory_graph import InventoryGraph
from bundler.fleet.inventory_ini import expand_hosts, read_ini

__all__ = ["read_inventory"]

_YAML_SUFFIXES = (".yml", ".yaml", ".json")


def _read(path: Path, what: str) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_INVENTORY_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(raw) > MAX_INVENTORY_BYTES:
        raise UsageError(f"{what} {path} is larger than {MAX_INVENTORY_BYTES} bytes")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not text (UTF-8)") from None


def _yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(_read(path, what))
    except yaml.YAMLError as e:
        raise UsageError(f"{what} {path} is not YAML: {str(e).splitlines()[0]}") from None


def _mapping(path: Path, value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UsageError(f"{path}: {where} must be a mapping of names")
    return value


def _yaml_group(path: Path, graph: InventoryGraph, name: str, body: Any) -> None:
    body = _mapping(path, body, f"group {name}")
    graph.add_group(name)
    graph.group_vars(name).update(_mapping(path, body.get("vars"), f"{name}.vars"))
    for pattern, own in _mapping(path, body.get("hosts"), f"{name}.hosts").items():
        own = _mapping(path, own, f"host {pattern}")
        names, port = expand_hosts(pattern, graph.budget())
        for host in names:
            graph.add_host(name, host, own if port is None else {"ansible_port": port, **own})
    for child, sub in _mapping(path, body.get("children"), f"{name}.children").items():
        graph.add_child(name, child)
        _yaml_group(path, graph, child, sub)


def _read_yaml(path: Path, graph: InventoryGraph) -> None:
    top = _mapping(path, _yaml(path, "inventory"), "the top level")
    # `all` is the root group; other top-level groups are its children.
    for name, body in top.items():
        if name != "all":
            graph.add_child("all", name)
        _yaml_group(path, graph, name, body)


def _vars_files(base: Path, name: str) -> list[Path]:
    found = [base / name] + [base / f"{name}{s}" for s in _YAML_SUFFIXES]
    files = [p for p in found if p.is_file()]
    folder = base / name
    if folder.is_dir():
        files += sorted(p for p in folder.rglob("*") if p.is_file()
                        and (p.suffix in _YAML_SUFFIXES or not p.suffix))
    return files


def _vars_dir(base: Path, names: list[str], into: dict[str, dict[str, Any]]) -> None:
    if not base.is_dir():
        return
    for name in names:
        for file in _vars_files(base, name):
            into.setdefault(name, {}).update(_mapping(file, _yaml(file, "variables file"),
                                                      "the top level"))


def read_inventory(path: Path) -> dict[str, Any]:
    """The ``ansible-inventory --list`` document of the inventory file ``path``."""
    if path.is_dir():
        raise UsageError(f"inventory {path} is a directory: name the inventory file")
    graph = InventoryGraph()
    if path.suffix in _YAML_SUFFIXES:
        _read_yaml(path, graph)
    else:
        read_ini(path, _read(path, "inventory"), graph)
    _vars_dir(path.parent / "group_vars", list(graph.members), graph.dir_group_vars)
    _vars_dir(path.parent / "host_vars", list(graph.hosts), graph.dir_host_vars)
    return graph.listing()
