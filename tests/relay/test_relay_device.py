"""Devices install from another device's relay: resumed after a kill -9, refused when tampered.

Device A installed the site release from the stick and serves it
(``airlock-agent serve --registry``). Device B, started from nothing, installs
``http://…/bundles/site-1.airlock``: the relay is killed with a real SIGKILL
in the middle of the 96 MB model blob and started again, and B's pull resumes
with Range where it stopped, verified end to end as from a stick. A byte
changed on A's disk (its stamp kept, so A's own check is fooled) is refused by
device C with exit 3, and C is left as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.relay.catalog import split_ref
from scripts import ocikit
from tests.support.cli import run_agent, tool_env
from tests.support.device import agent_json, init_device
from tests.support.keyset import Keys
from tests.support.registry import Content
from tests.support.relay import Relay, relay_of

pytestmark = pytest.mark.integration


@pytest.fixture
def device_a(site_bundle: Path, keyset: Keys, tmp_path: Path) -> Path:
    root = init_device(tmp_path / "a", keyset)
    assert agent_json(root, "install", site_bundle)["active"] == "site-1"
    return root


@pytest.fixture
def relay(device_a: Path) -> Iterator[Relay]:
    with relay_of(device_a, ocikit.free_port()) as r:
        yield r


def _biggest_staged(root: Path) -> int:
    staging = root / "staging"
    sizes = [p.stat().st_size for p in staging.iterdir() if p.is_file()] if staging.is_dir() else []
    return max(sizes, default=0)


def test_the_relay_serves_the_bundle_as_built(relay: Relay, site_bundle: Path) -> None:
    with urllib.request.urlopen(relay.url("/bundles/site-1.airlock"), timeout=60) as r:
        served = r.read()
    # Re-assembled from A's store, byte for byte the file the host built.
    assert hashlib.sha256(served).hexdigest() == hashlib.sha256(site_bundle.read_bytes()).hexdigest()
    ranged = subprocess.run(["curl", "-sf", "--range", "1000-1999",
                             relay.url("/bundles/site-1.airlock")], capture_output=True)
    assert ranged.returncode == 0 and ranged.stdout == served[1000:2000]


def test_a_device_from_nothing_installs_from_the_relay_resuming_after_kill9(
        relay: Relay, keyset: Keys, tmp_path: Path, site_bundle: Path) -> None:
    b = init_device(tmp_path / "b", keyset)
    install = subprocess.Popen(
        [sys.executable, "-m", "agent", "--root", str(b), "install",
         relay.url("/bundles/site-1.airlock"), "--json"],
        env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _biggest_staged(b) < 16 * 1024 * 1024:  # well into the 96 MB blob
        assert install.poll() is None, install.communicate()
        assert time.monotonic() < deadline, "the pull never got into the big blob"
        time.sleep(0.01)
    relay.kill9()  # the relay dies mid-blob
    cut_at = _biggest_staged(b)
    time.sleep(1.0)
    relay.restart()
    out, err = install.communicate(timeout=300)
    assert install.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["active"] == "site-1"
    download = result["download"]
    total = site_bundle.stat().st_size
    assert download["bytes_total"] == total
    assert download["resumes"] == 1
    # Resumed where it stopped, not from the start: the bytes fetched are the bundle once.
    assert download["bytes_received"] == total
    assert download["resumed_at"][0] >= cut_at
    print(f"RESUME bundle {total} bytes, cut at {download['resumed_at'][0]}, received "
          f"{download['bytes_received']} (a restart from zero: "
          f"{total + download['resumed_at'][0]})")
    status = agent_json(b, "status")
    assert status["active"]["id"] == "site-1"


def test_a_changed_byte_on_the_relay_is_refused_by_the_device(
        relay: Relay, device_a: Path, keyset: Keys, tmp_path: Path, content: Content) -> None:
    with urllib.request.urlopen(relay.url("/bundles/site-1.airlock"), timeout=60) as r:
        r.read()  # the relay has checked every blob once; it trusts their stamps from now on
    blobs = device_a / "blobs" / "sha256"
    big = max(blobs.iterdir(), key=lambda p: p.stat().st_size)
    st = big.stat()
    os.chmod(big, 0o644)
    with open(big, "r+b") as f:  # one byte, in place; the stamp put back
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    c = init_device(tmp_path / "c", keyset)
    r = run_agent("--root", c, "install", relay.url("/bundles/site-1.airlock"), "--json")
    assert r.returncode == 3, r.stderr
    assert big.name in json.loads(r.stdout)["error"] or "digest" in r.stdout.lower()
    assert agent_json(c, "status")["active"] is None
    assert not any((c / "blobs" / "sha256").iterdir())
    # Started again, the relay checks the blob afresh and serves it no more.
    relay.stop()
    relay.restart()
    repo = split_ref(content.app)[0]
    served = subprocess.run(["curl", "-s", "-w", "%{http_code}", relay.url(
        f"/v2/{repo}/blobs/sha256:{big.name}")], capture_output=True, text=True)
    assert served.stdout.endswith("404") and "failed its check" in served.stdout
