"""A network namespace per simulated device, as separate hosts at a site are.

    with device_netns() as net:          # "ip netns add", a veth pair, 10.A.B.2/30 inside
        Sshd.start(tmp_path / "cam-1", netns=net)   # sshd on net.address port 22
    # the namespace (and with it the veth pair) is deleted, whatever happened

Each namespace gets one end of a veth pair with its own address; the host keeps
the other end (the /30's first address), so the host reaches the device by
routing, not by a loopback port. Names and addresses carry this process's id,
so parallel workers (and runs) do not collide; only addresses of the
namespaces made here are ever used. ``netns_unavailable()`` says why a machine
cannot (not root, no ``ip``, namespaces not permitted): the site falls back to
loopback ports then, and fails instead under ``CI=true``.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["DeviceNet", "device_netns", "netns_unavailable"]

_counter = itertools.count()


@dataclass(frozen=True)
class DeviceNet:
    name: str  # the namespace (``ip netns exec NAME ...``)
    address: str  # the device's own address inside it


def _ip(*args: str) -> None:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip()}")


@functools.cache
def netns_unavailable() -> str | None:
    """Why this machine cannot give devices namespaces, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no 'ip' command (iproute2)"
    probe = f"alp{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as e:
        return f"ip netns is not permitted here: {e}"
    _ip("netns", "del", probe)
    return None


@contextmanager
def device_netns() -> Iterator[DeviceNet]:
    """A fresh namespace with a veth link to the host; deleted on the way out."""
    n = next(_counter)
    pid = os.getpid()
    name, host_if, dev_if = f"airlock-{pid}-{n}", f"alh{pid % 10**6}x{n}", f"ald{pid % 10**6}x{n}"
    # 10.A.B.C/30 per device: A from the pid, B and C from the counter.
    a, b, c = 64 + pid % 128, (n // 64) % 256, (n % 64) * 4
    host_addr, dev_addr = f"10.{a}.{b}.{c + 1}", f"10.{a}.{b}.{c + 2}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", dev_if)
        _ip("link", "set", dev_if, "netns", name)
        _ip("addr", "add", f"{host_addr}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{dev_addr}/30", "dev", dev_if)
        _ip("-n", name, "link", "set", dev_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield DeviceNet(name, dev_addr)
    finally:
        # Deleting the namespace deletes its veth end, and with it the host's.
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
