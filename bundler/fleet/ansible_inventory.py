"""The site's devices, read from the Ansible inventory the site team already keeps.

``airlock fleet hosts --inventory site.yml --ring canary`` lists what a rollout would touch::

    site = load_site(Path("site.yml"))
    for device in site.select(ring="canary", limit="cams:!cam-9"):
        print(device.name, device.target, device.ring, device.root)

Two readers give the same answer: ``ansible-inventory -i INV --list`` run as a
program when Ansible is installed (``bundler.fleet.ansible_program``: dynamic
inventories and vault too), else the built-in one
(``bundler.fleet.inventory_files``: YAML, INI, host ranges such as
``cam[01:20].north``, ``group_vars/`` and ``host_vars/`` beside the
inventory). ``reader="builtin"`` or ``"ansible"`` picks one. Both yield the
``--list`` document: each host's variables merged as Ansible merges them;
unknown keys are ignored.
Airlock reads ``ansible_host`` (default: the host's name), ``ansible_port``
(22), ``ansible_user`` (required), ``ansible_ssh_private_key_file`` (else
the SSH agent), and its own ``airlock_root`` (``/var/lib/airlock``),
``airlock_ring``, ``airlock_agent`` (``airlock-agent``, a shell command
prefix such as ``sudo airlock-agent``) and ``airlock_dest`` (where bundles
are copied, default ``airlock-incoming`` in the login's home).

A ``--limit`` is Ansible's pattern: names or globs of hosts or groups,
separated by ``,`` or ``:``; ``!name`` removes, ``&name`` keeps only
members of ``name``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airlock.errors import UsageError
from airlock.limits import MAX_SITE_HOSTS
from bundler.fleet.ssh import Target
from keys.signed_fields import is_plain_name

__all__ = ["Device", "SiteInventory", "load_site", "site_from_listing"]

@dataclass(frozen=True)
class Device:
    """One host of the inventory, with what Airlock needs to reach and drive it."""

    name: str
    target: Target
    user: str
    identity: Path | None  # None: keys from the SSH agent
    root: str
    ring: str | None
    agent: str
    dest: str
    groups: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": str(self.target), "user": self.user,
                "identity": str(self.identity) if self.identity else None, "root": self.root,
                "ring": self.ring, "agent": self.agent, "dest": self.dest,
                "groups": list(self.groups)}


@dataclass
class SiteInventory:
    """Every device of an inventory, in the order the inventory names them."""

    path: Path
    devices: list[Device] = field(default_factory=list)
    reader: str = "builtin"  # or "ansible-inventory": which reader listed the hosts

    def select(self, ring: str | None = None, limit: str | None = None) -> list[Device]:
        chosen = [d for d in self.devices if ring is None or d.ring == ring]
        if limit:
            chosen = [d for d in chosen if _matches(d, limit)]
        return chosen


def _matches(device: Device, pattern: str) -> bool:
    def hit(term: str) -> bool:
        return any(fnmatch.fnmatchcase(n, term) for n in (device.name, *device.groups))

    terms = [t for t in re.split(r"[,:]", pattern) if t]
    plain = [t for t in terms if t[0] not in "!&"]
    ok = any(hit(t) for t in plain) if plain else True
    ok = ok and all(hit(t[1:]) for t in terms if t[0] == "&")
    return ok and not any(hit(t[1:]) for t in terms if t[0] == "!")


def _text(host: str, key: str, value: Any, default: str | None) -> str | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise UsageError(f"host {host}: {key} must be a non-empty string, not {value!r}")
    return str(value)


def _device(path: Path, host: str, v: dict[str, Any], groups: set[str]) -> Device:
    # Host and ring names follow the rule of every signed name (keys.signed_fields), so a
    # ring the inventory accepts is one a release can name, and the other way round.
    if not is_plain_name(host):
        raise UsageError(f"{path}: host name {host!r} is not a plain name")
    user = _text(host, "ansible_user", v.get("ansible_user"), None)
    if user is None:
        raise UsageError(f"{path}: host {host} has no ansible_user (set it on the host or a group)")
    address = _text(host, "ansible_host", v.get("ansible_host"), host) or host
    port = v.get("ansible_port", 22)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"{path}: host {host}: ansible_port must be 1-65535, not {port!r}")
    key = _text(host, "ansible_ssh_private_key_file",
                v.get("ansible_ssh_private_key_file", v.get("ansible_private_key_file")), None)
    identity = None
    if key is not None:
        identity = Path(key).expanduser()
        if not identity.is_absolute():
            identity = path.parent / identity  # as Ansible: relative to the inventory
    ring = _text(host, "airlock_ring", v.get("airlock_ring"), None)
    if ring is not None and not is_plain_name(ring):
        raise UsageError(f"{path}: host {host}: airlock_ring {ring!r} is not a ring name")
    return Device(
        name=host, target=Target(address.strip("[]"), port), user=user, identity=identity,
        root=_text(host, "airlock_root", v.get("airlock_root"), "/var/lib/airlock") or "",
        ring=ring, agent=_text(host, "airlock_agent", v.get("airlock_agent"), "airlock-agent") or "",
        dest=_text(host, "airlock_dest", v.get("airlock_dest"), "airlock-incoming") or "",
        groups=tuple(sorted(groups - {"all", "ungrouped"})),
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ancestors(doc: dict[str, Any]) -> dict[str, set[str]]:
    up: dict[str, set[str]] = {}
    for group, entry in doc.items():
        if group != "_meta" and isinstance(entry, dict):
            for kid in entry.get("children") or []:
                up.setdefault(kid, set()).add(group)
    return up


def _walk_hosts(doc: dict[str, Any]) -> list[tuple[str, set[str]]]:
    """Hosts in inventory order (depth first from ``all``), each with every group it is in."""
    up = _ancestors(doc)
    order: list[str] = []
    groups: dict[str, set[str]] = {}
    stack, seen = ["all"], set()
    while stack:
        group = stack.pop()
        if group in seen:
            continue
        seen.add(group)
        entry = _dict(doc.get(group))
        for host in entry.get("hosts") or []:
            if host not in groups:
                order.append(host)
                groups[host] = set()
            todo = [group]
            while todo:  # the group and all its ancestors
                g = todo.pop()
                if g not in groups[host]:
                    groups[host].add(g)
                    todo.extend(up.get(g, ()))
        stack.extend(reversed(entry.get("children") or []))
    return [(h, groups[h]) for h in order]


def site_from_listing(path: Path, doc: dict[str, Any]) -> SiteInventory:
    """The devices of an ``ansible-inventory --list`` document read from ``path``."""
    hostvars = _dict(_dict(doc.get("_meta")).get("hostvars"))
    walked = _walk_hosts(doc)
    if len(walked) > MAX_SITE_HOSTS:
        raise UsageError(f"{path}: more than {MAX_SITE_HOSTS} hosts")
    devices = []
    for host, groups in walked:
        devices.append(_device(path, host, _dict(hostvars.get(host)), groups))
    if not devices:
        raise UsageError(f"inventory {path} lists no hosts")
    return SiteInventory(path, devices)


def load_site(path: Path, reader: str = "auto") -> SiteInventory:
    """Every device of the Ansible inventory ``path``; exit 2 on anything wrong.

    ``reader``: ``auto`` (Ansible's own when installed), ``ansible`` or ``builtin``.
    """
    from bundler.fleet.ansible_program import ansible_list, find_ansible_inventory
    from bundler.fleet.inventory_files import read_inventory

    if not path.exists():
        raise UsageError(f"cannot read inventory {path}: No such file or directory")
    program = find_ansible_inventory() if reader in ("auto", "ansible") else None
    if reader == "ansible" and program is None:
        raise UsageError("--inventory-reader ansible: ansible-inventory is not installed "
                         "(pip install ansible-core)")
    doc = ansible_list(program, path) if program else read_inventory(path)
    site = site_from_listing(path, doc)
    site.reader = "ansible-inventory" if program else "builtin"
    return site
