"""containerd pulls the release's image through the relay, by a generated ``hosts.toml``.

Debian's ``containerd`` runs here as the test starts it: its own root, state,
socket and config in a temp dir (CRI off). ``airlock-agent registry-config
--for containerd --write --path DIR`` writes ``DIR/HOST/hosts.toml``, and
``ctr image pull --hosts-dir DIR`` pulls through it. The image is pulled under
a registry name that resolves nowhere (``registry.site.invalid``), so only the
relay can have answered. k3s and RKE2 cannot run here: their
``registries.yaml`` and the ``k3s-images`` sink are checked as files.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from airlock.relay.catalog import split_ref
from scripts import ocikit
from tests.support.device import agent_json, init_device
from tests.support.keyset import Keys
from tests.support.registry import Content
from tests.support.relay import Relay, relay_of

pytestmark = pytest.mark.integration


@pytest.fixture
def relay(site_bundle: Path, keyset: Keys, tmp_path: Path) -> Iterator[Relay]:
    root = init_device(tmp_path / "a", keyset)
    assert agent_json(root, "install", site_bundle)["active"] == "site-1"
    with relay_of(root, ocikit.free_port()) as r:
        yield r


@contextlib.contextmanager
def containerd(where: Path) -> Iterator[Path]:
    if not shutil.which("containerd") or not shutil.which("ctr"):
        pytest.skip("containerd not installed (apt-get install containerd)")
    sock = where / "containerd.sock"
    config = where / "config.toml"
    config.write_text(
        f'version = 2\nroot = "{where}/root"\nstate = "{where}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n')
    log = open(where / "containerd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None, (where / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not start"
            time.sleep(0.1)
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_containerd_pulls_the_image_through_the_relay(
        relay: Relay, content: Content, tmp_path: Path) -> None:
    hosts = tmp_path / "certs.d"
    out = agent_json(relay.root, "registry-config", "--for", "containerd", "--relay",
                     relay.url(""), "--registry", "registry.site.invalid", "--path", hosts,
                     "--write")
    assert f"wrote {hosts / 'registry.site.invalid' / 'hosts.toml'}" in out["written"]
    # The registry the release's images came from is mirrored too, found in the release.
    assert (hosts / content.host / "hosts.toml").is_file()
    repo, tag = split_ref(content.app)
    ref = f"registry.site.invalid/{repo}:{tag}"
    where = tmp_path / "ctrd"
    where.mkdir()
    with containerd(where) as sock:
        pull = subprocess.run(["ctr", "--address", str(sock), "-n", "airlock", "image", "pull",
                               "--hosts-dir", str(hosts), "--snapshotter", "native", ref],
                              capture_output=True, text=True, timeout=300)
        assert pull.returncode == 0, pull.stderr + pull.stdout
        listed = subprocess.run(["ctr", "--address", str(sock), "-n", "airlock", "content",
                                 "ls", "-q"], capture_output=True, text=True, timeout=60)
        assert content.shared_layer in listed.stdout.split()


def test_registries_yaml_and_daemon_json_are_merged_with_a_backup(
        relay: Relay, content: Content, tmp_path: Path) -> None:
    k3s = tmp_path / "registries.yaml"
    k3s.write_text("mirrors:\n  docker.io:\n    endpoint: [\"https://mirror.site\"]\n")
    agent_json(relay.root, "registry-config", "--for", "k3s", "--relay", "http://relay:9401",
               "--path", k3s, "--write")
    doc = yaml.safe_load(k3s.read_text())
    assert doc["mirrors"][content.host]["endpoint"] == ["http://relay:9401"]
    assert doc["mirrors"]["docker.io"]["endpoint"] == ["https://mirror.site"]  # kept
    assert "mirror.site" in (tmp_path / "registries.yaml.airlock-backup").read_text()
    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"log-driver": "journald", "registry-mirrors": ["https://m.site"]}\n')
    agent_json(relay.root, "registry-config", "--for", "docker", "--relay", "http://relay:9401",
               "--path", daemon, "--write")
    merged = json.loads(daemon.read_text())
    assert merged["log-driver"] == "journald"
    assert merged["registry-mirrors"] == ["http://relay:9401", "https://m.site"]
    assert merged["insecure-registries"] == ["relay:9401"]
    assert json.loads((tmp_path / "daemon.json.airlock-backup").read_text())["log-driver"]


def test_the_k3s_images_sink_writes_archives_containerd_imports(
        site_bundle: Path, keyset: Keys, content: Content, tmp_path: Path) -> None:
    images = tmp_path / "rancher" / "k3s" / "agent" / "images"
    root = tmp_path / "k3s-node"
    agent_json(root, "init", "--trust", keyset.trust, "--device-id", "node-1", "--sink",
               "k3s-images", "--sink-option", f"path={images}")
    agent_json(root, "install", site_bundle)
    archives = sorted(p.name for p in images.iterdir())
    assert archives == ["airlock-site-1-1.tar", "airlock-site-1-2.tar"]  # no partial left
    # k3s imports this directory with containerd's importer: the same one ctr runs.
    where = tmp_path / "ctrd"
    where.mkdir()
    with containerd(where) as sock:
        for name in archives:
            r = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "images",
                                "import", "--snapshotter", "native", str(images / name)],
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
        listed = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "images", "ls",
                                 "-q"], capture_output=True, text=True, timeout=60).stdout
        assert content.app in listed.split() and content.worker in listed.split()
