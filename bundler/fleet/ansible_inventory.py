"""The site's devices, read from the Ansible YAML inventory the site team already keeps.

``airlock fleet hosts --inventory site.yml --ring canary`` lists what a rollout would touch::

    site = load_site(Path("site.yml"))
    for device in site.select(ring="canary", limit="cams:!cam-9"):
        print(device.name, device.target, device.ring, device.root)

The format is Ansible's: nested groups under ``children:``, hosts under
``hosts:``, variables under ``vars:`` of a group or on the host itself. As in
Ansible, a host's variables are its groups' (``all`` first, then deeper
groups, then by name) overlaid by its own; unknown keys are ignored.
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

import yaml

from airlock.errors import UsageError
from airlock.limits import MAX_INVENTORY_BYTES, MAX_SITE_HOSTS
from bundler.fleet.ssh import Target
from keys.signed_fields import is_plain_name

__all__ = ["Device", "SiteInventory", "load_site"]

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


class _Walk:
    """Collects each host's group variables (with depth) and own variables."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.order: list[str] = []
        self.group_vars: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, set[str]] = {}

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise UsageError(f"{self.path}: {where} must be a mapping of names")
        return value

    def group(self, name: str, body: Any, depth: int, parents: tuple[tuple[int, str, dict[str, Any]], ...],
              seen: tuple[str, ...]) -> None:
        if name in seen:
            raise UsageError(f"{self.path}: group {name} contains itself")
        body = self.mapping(body, f"group {name}")
        chain = (*parents, (depth, name, self.mapping(body.get("vars"), f"{name}.vars")))
        for host, own in self.mapping(body.get("hosts"), f"{name}.hosts").items():
            if host not in self.host_vars:
                if len(self.order) >= MAX_SITE_HOSTS:
                    raise UsageError(f"{self.path}: more than {MAX_SITE_HOSTS} hosts")
                self.order.append(host)
                self.host_vars[host] = {}
            self.host_vars[host].update(self.mapping(own, f"host {host}"))
            got = self.group_vars.setdefault(host, [])
            got.extend(c for c in chain if c not in got)
            self.groups.setdefault(host, set()).update(c[1] for c in chain)
        for child, sub in self.mapping(body.get("children"), f"{name}.children").items():
            self.group(child, sub, depth + 1, chain, (*seen, name))


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


def load_site(path: Path) -> SiteInventory:
    """Every device of the Ansible YAML inventory ``path``; exit 2 on anything wrong."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read inventory {path}: {e.strerror}") from None
    if len(raw) > MAX_INVENTORY_BYTES:
        raise UsageError(f"inventory {path} is larger than {MAX_INVENTORY_BYTES} bytes")
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise UsageError(f"inventory {path} is not YAML: {str(e).splitlines()[0]}") from None
    walk = _Walk(path)
    top = walk.mapping(doc, "the top level")
    # `all` is the root group; other top-level groups are its children.
    alls = walk.mapping(top.get("all"), "all")
    rest = {k: b for k, b in top.items() if k != "all"}
    merged = {**alls, "children": {**walk.mapping(alls.get("children"), "all.children"), **rest}}
    walk.group("all", merged, 0, (), ())
    devices = []
    for host in walk.order:
        v: dict[str, Any] = {}
        for _, _, gv in sorted(walk.group_vars[host], key=lambda c: (c[0], c[1])):
            v.update(gv)
        v.update(walk.host_vars[host])
        devices.append(_device(path, host, v, walk.groups[host]))
    if not devices:
        raise UsageError(f"inventory {path} lists no hosts")
    return SiteInventory(path, devices)
