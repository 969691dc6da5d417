"""``airlock fleet rollout --via RELAY``: the waves pull from the site relay instead of a push each.

Two sshd devices (each its own network namespace where permitted), on
vision-1; the host serves vision-2 with ``airlock serve`` on every address.
The rollout sends no bytes over SFTP: each device's agent pulls
``/bundles/vision-2.airlock`` from the relay and verifies it as from a stick.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scripts import ocikit
from tests.support.cli import run_airlock, tool_env
from tests.support.keyset import Keys
from tests.support.site import TestSite
from tests.support.sshd import need_sshd

pytestmark = pytest.mark.integration


def _route_to_host(site: TestSite) -> str:
    """The relay's address as the devices reach it; each namespace routed to the host."""
    hosts = [s.host for s in site.servers.values()]
    if all(h.startswith("127.") for h in hosts):
        return "127.0.0.1"
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name in (line.split()[0] for line in names.splitlines() if line.strip()):
        addrs = subprocess.run(["ip", "-n", name, "-o", "addr"], capture_output=True,
                               text=True).stdout
        for h in hosts:
            if f" {h}/30" in addrs:
                gateway = h.rsplit(".", 1)[0] + "." + str(int(h.rsplit(".", 1)[1]) - 1)
                subprocess.run(["ip", "-n", name, "route", "replace", "default", "via",
                                gateway], check=True, capture_output=True)
    first = hosts[0]
    return first.rsplit(".", 1)[0] + "." + str(int(first.rsplit(".", 1)[1]) - 1)


@pytest.fixture
def relay_bundles(make_bundle: Callable[..., Path]) -> tuple[Path, Path]:
    need_sshd()
    return make_bundle(sequence=1, runs=2), make_bundle(sequence=2, runs=2)


@pytest.fixture
def site(relay_bundles: tuple[Path, Path], keyset: Keys, tmp_path: Path) -> Iterator[TestSite]:
    with TestSite.start(tmp_path / "site", keyset.trust, ["prod", "prod"],
                        base=relay_bundles[0]) as s:
        yield s


def test_rollout_via_the_relay_pushes_nothing(site: TestSite, relay_bundles: tuple[Path, Path],
                                              keyset: Keys) -> None:
    address = _route_to_host(site)
    port = ocikit.free_port()
    relay = subprocess.Popen([sys.executable, "-m", "bundler", "serve", str(relay_bundles[1]),
                              "--trust", str(keyset.trust), "--listen", f"0.0.0.0:{port}"],
                             env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert relay.poll() is None
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        p = run_airlock("fleet", "rollout", relay_bundles[1], "--inventory", site.inventory,
                        "--known-hosts", site.known_hosts, "--waves", "1,100%", "--via",
                        f"http://{address}:{port}", "--json")
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        for d in out["devices"]:
            assert (d["before"], d["after"], d["result"]) == ("vision-1", "vision-2", "installed")
            assert d["bytes_sent"] == 0  # nothing over SFTP: the device pulled from the relay
        assert all(site.active(n) == "vision-2" for n in site.servers)
    finally:
        relay.terminate()
        relay.wait(60)
