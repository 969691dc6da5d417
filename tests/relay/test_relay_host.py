"""``airlock serve`` on a host: the bundle verified at start, then served as the device's relay is.

A device installs from it as from another device's relay; a bundle with a
changed byte is refused at start (exit 3) and nothing is served.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from airlock.relay.catalog import split_ref
from scripts import ocikit
from tests.support.cli import run_airlock, tool_env
from tests.support.device import agent_json, init_device
from tests.support.keyset import Keys
from tests.support.registry import Content

pytestmark = pytest.mark.integration


def test_a_host_serves_a_verified_bundle_to_devices_and_skopeo(
        site_bundle: Path, keyset: Keys, content: Content, tmp_path: Path) -> None:
    port = ocikit.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bundler", "serve", str(site_bundle),
                             "--trust", str(keyset.trust), "--listen", f"127.0.0.1:{port}"],
                            env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/bundles/site-1.airlock"
        with urllib.request.urlopen(url, timeout=60) as r:
            assert hashlib.sha256(r.read()).digest() == hashlib.sha256(
                site_bundle.read_bytes()).digest()
        repo, tag = split_ref(content.worker)
        r = ocikit.skopeo("inspect", "--tls-verify=false", f"docker://127.0.0.1:{port}/{repo}:{tag}")
        assert r.returncode == 0, r.stderr
        device = init_device(tmp_path / "d", keyset)
        assert agent_json(device, "install", url)["active"] == "site-1"
    finally:
        proc.terminate()
        assert proc.wait(60) == 0


def test_a_changed_byte_is_refused_at_start(site_bundle: Path, keyset: Keys,
                                            tmp_path: Path) -> None:
    bad = tmp_path / "bad.airlock"
    data = bytearray(site_bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    r = run_airlock("serve", bad, "--trust", keyset.trust, "--listen",
                    f"127.0.0.1:{ocikit.free_port()}", timeout=300)
    assert r.returncode == 3, r.stderr
    assert "airlock-serve-" not in r.stderr
