"""Groups, hosts and variables of an inventory, merged the way ``ansible-inventory --list`` does.

The built-in reader fills a graph from YAML or INI, then asks it for the same
JSON document ``ansible-inventory -i INV --list`` prints, so the rest of
Airlock reads one shape whichever reader ran::

    graph = InventoryGraph()
    graph.add_host("north", "cam01", {"airlock_ring": "canary"})
    graph.group_vars("all")["ansible_user"] = "op"
    graph.listing()["_meta"]["hostvars"]["cam01"]
    # -> {"airlock_ring": "canary", "ansible_user": "op"}

Precedence is Ansible's (lowest first): the inventory's ``all`` variables,
``group_vars/all``, the inventory's other groups (shallow before deep, then by
name), ``group_vars/<group>`` in the same order, the host's own inventory
variables, ``host_vars/<host>``. A group's depth is its longest path from
``all``.
"""

from __future__ import annotations

from typing import Any

from airlock.errors import UsageError
from airlock.limits import MAX_SITE_HOSTS

__all__ = ["InventoryGraph"]


class InventoryGraph:
    """What an inventory declares, in the order it declares it."""

    def __init__(self) -> None:
        self.hosts: dict[str, dict[str, Any]] = {}  # host -> its own inventory variables
        self.members: dict[str, list[str]] = {"all": [], "ungrouped": []}
        self.children: dict[str, list[str]] = {"all": ["ungrouped"], "ungrouped": []}
        self.vars: dict[str, dict[str, Any]] = {"all": {}, "ungrouped": {}}
        self.dir_group_vars: dict[str, dict[str, Any]] = {}  # group_vars/ beside the inventory
        self.dir_host_vars: dict[str, dict[str, Any]] = {}   # host_vars/ beside the inventory

    def budget(self) -> int:
        """How many more hosts the inventory may name (airlock.limits.MAX_SITE_HOSTS)."""
        return MAX_SITE_HOSTS - len(self.hosts)

    def add_group(self, name: str) -> None:
        if name not in self.members:
            self.members[name], self.children[name], self.vars[name] = [], [], {}
            if name != "all":
                self.children["all"].append(name)

    def add_child(self, parent: str, child: str) -> None:
        self.add_group(parent)
        self.add_group(child)
        if child not in self.children[parent]:
            self.children[parent].append(child)

    def group_vars(self, name: str) -> dict[str, Any]:
        self.add_group(name)
        return self.vars[name]

    def add_host(self, group: str, name: str, own: dict[str, Any]) -> None:
        if name not in self.hosts:
            if self.budget() <= 0:
                raise UsageError(f"the inventory lists more than {MAX_SITE_HOSTS} hosts")
            self.hosts[name] = {}
        self.hosts[name].update(own)
        self.add_group(group)
        if name not in self.members[group]:
            self.members[group].append(name)

    def _parents(self) -> dict[str, set[str]]:
        up: dict[str, set[str]] = {g: set() for g in self.children}
        for parent, kids in self.children.items():
            for kid in kids:
                up[kid].add(parent)
        return up

    def _depths(self) -> dict[str, int]:
        depth = {"all": 0}
        stack: list[tuple[str, tuple[str, ...]]] = [("all", ("all",))]
        while stack:
            group, path = stack.pop()
            for kid in self.children[group]:
                if kid in path:
                    raise UsageError(f"the inventory's group {kid} contains itself")
                if depth.get(kid, -1) < len(path):
                    depth[kid] = len(path)
                    stack.append((kid, (*path, kid)))
        return depth

    def groups_of(self, host: str) -> set[str]:
        """Every group ``host`` is in, directly or through a child group, ``all`` included."""
        up = self._parents()
        found: set[str] = {"all"}
        todo = [g for g, hosts in self.members.items() if host in hosts]
        while todo:
            group = todo.pop()
            if group not in found:
                found.add(group)
                todo.extend(up[group])
        return found

    def _finish(self) -> None:
        # As Ansible: a host in no group but `all` is `ungrouped`; `all` lists no host itself.
        for host in self.hosts:
            if not self.groups_of(host) - {"all", "ungrouped"} and host not in self.members["ungrouped"]:
                self.members["ungrouped"].append(host)
        self.members["all"] = []

    def host_vars(self, host: str, depth: dict[str, int]) -> dict[str, Any]:
        ordered = sorted(self.groups_of(host) - {"all"}, key=lambda g: (depth.get(g, 0), g))
        merged: dict[str, Any] = {}
        merged.update(self.vars["all"])
        merged.update(self.dir_group_vars.get("all", {}))
        for group in ordered:
            merged.update(self.vars[group])
        for group in ordered:
            merged.update(self.dir_group_vars.get(group, {}))
        merged.update(self.hosts[host])
        merged.update(self.dir_host_vars.get(host, {}))
        return merged

    def listing(self) -> dict[str, Any]:
        """The document ``ansible-inventory --list`` prints for this inventory."""
        self._finish()
        depth = self._depths()
        doc: dict[str, Any] = {"_meta": {"hostvars": {h: self.host_vars(h, depth) for h in self.hosts}}}
        for group in self.members:
            entry: dict[str, Any] = {}
            if self.members[group]:
                entry["hosts"] = list(self.members[group])
            if self.children[group]:
                entry["children"] = list(self.children[group])
            if entry:
                doc[group] = entry
        return doc
