"""A site of simulated devices for rollout tests: one real sshd and one agent root per device.

    with TestSite.start(tmp_path, trust, rings=["canary", "prod", "prod"], base=v1) as site:
        site.inventory                 # Ansible YAML naming cam-1… with port, user, key, ring
        site.known_hosts               # every device's host key, as an operator recorded them
        run_airlock("fleet", "rollout", v2, "--inventory", site.inventory,
                    "--known-hosts", site.known_hosts)
        site.active("cam-2")           # "vision-2": asked of that device's agent directly

Each device is an ``Sshd`` (tests/support/sshd.py) in its own network
namespace, on its own address and port 22 (tests/support/netns.py), as separate
hosts at a site are; where namespaces are not permitted (not root, a locked-down
container) it falls back to its own loopback port, and under ``CI=true`` that
fails instead. Each has its own host key, and an agent root initialised with ``trust``, the
device id ``cam-N`` and its ring, and holding the release ``base`` so a
rollout has something to move from and back to. The inventory's
``airlock_agent`` runs this checkout's agent (``python -m agent`` with
``PYTHONPATH``), since sshd gives a session a clean environment.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import REPO, run_agent
from tests.support.device import agent_json, copy_device
from tests.support.netns import device_netns, netns_unavailable
from tests.support.sshd import Sshd, keygen

AGENT = f"env PYTHONPATH={shlex.quote(str(REPO))} {shlex.quote(sys.executable)} -m agent"


@dataclass
class TestSite:
    dir: Path
    servers: dict[str, Sshd]
    roots: dict[str, Path]
    rings: dict[str, str | None]
    identity: Path
    inventory: Path
    known_hosts: Path
    stack: ExitStack = field(repr=False, default_factory=ExitStack)

    __test__ = False  # not a test class, despite its name

    @classmethod
    @contextmanager
    def start(cls, directory: Path, trust: Path, rings: Sequence[str | None],
              base: Path | None = None, template: Path | None = None) -> Iterator[TestSite]:
        """Devices copied from ``template`` (a root from :func:`site_template`), or from one
        made here with ``trust`` and ``base``: sites sharing a template share its install."""
        directory.mkdir(parents=True, exist_ok=True)
        identity = keygen(directory / "site_key")
        with ExitStack() as stack:
            servers: dict[str, Sshd] = {}
            roots: dict[str, Path] = {}
            ring_of: dict[str, str | None] = {}
            if template is None:
                template = site_template(directory / "template-root", trust, base)
            separate = _separate_hosts()
            for i, ring in enumerate(rings, 1):
                name = f"cam-{i}"
                net = stack.enter_context(device_netns()) if separate else None
                servers[name] = stack.enter_context(Sshd.start(directory / name, identity,
                                                               netns=net))
                root = copy_device(template, directory / name / "root")
                config = yaml.safe_load((root / "agent.yaml").read_text())
                config.update(device_id=name, ring=ring)
                (root / "agent.yaml").write_text(yaml.safe_dump(config))
                roots[name], ring_of[name] = root, ring
            site = cls(directory, servers, roots, ring_of, identity, directory / "site.yml",
                       directory / "known_hosts")
            site.write_inventory()
            site.known_hosts.write_text("".join(s.known_hosts_line() for s in servers.values()))
            yield site

    def write_inventory(self, extra: dict[str, dict[str, Any]] | None = None) -> Path:
        """The Ansible inventory: group ``cams`` with a child group per ring."""
        groups: dict[str, dict[str, Any]] = {}
        for name, server in self.servers.items():
            ring = self.rings[name]
            group = groups.setdefault(ring or "ringless", {"hosts": {}})
            if ring:
                group["vars"] = {"airlock_ring": ring}
            group["hosts"][name] = {"ansible_host": server.host, "ansible_port": server.port,
                                    "airlock_root": str(self.roots[name]),
                                    **(extra or {}).get(name, {})}
        doc = {"all": {
            "vars": {"ansible_user": next(iter(self.servers.values())).user,
                     "ansible_ssh_private_key_file": str(self.identity),
                     "airlock_agent": AGENT, "site_contact": "ops@example.org"},
            "children": {"cams": {"children": groups}}}}
        self.inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
        return self.inventory

    def active(self, name: str) -> str | None:
        """The id of the release device ``name`` runs, asked of its agent directly."""
        status = agent_json(self.roots[name], "status")
        return status["active"]["id"] if status["active"] else None


def _separate_hosts() -> bool:
    """Whether devices get namespaces; outside CI, loopback ports when they cannot."""
    why = netns_unavailable()
    if why is not None and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but devices cannot be separate hosts: {why}")
    return why is None


def site_template(root: Path, trust: Path, base: Path | None = None) -> Path:
    """The device every site device is copied from (hard links kept, then given its own id
    and ring): initialised with ``trust`` and running ``base``, one health check instead of N."""
    p = run_agent("--root", root, "init", "--trust", trust, "--device-id", "cam-0")
    assert p.returncode == 0, p.stderr
    if base is not None:
        agent_json(root, "install", base)
    return root
