"""Real clients against the relay: skopeo copy, oras-py pull, curl --range, writes refused, token.

The relay is device A's ``airlock-agent serve --registry``; what it serves is
the site release A verified and kept.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.relay.catalog import split_ref
from scripts import ocikit
from tests.support.device import agent_json, init_device
from tests.support.keyset import Keys
from tests.support.registry import Content
from tests.support.relay import Relay, relay_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def device(site_bundle: Path, keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = init_device(tmp_path_factory.mktemp("dev") / "a", keyset)
    assert agent_json(root, "install", site_bundle)["active"] == "site-1"
    return root


@pytest.fixture(scope="module")
def relay(device: Path) -> Iterator[Relay]:
    with relay_of(device, ocikit.free_port()) as r:
        yield r


def _curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-s", *args], capture_output=True, timeout=120)


def test_skopeo_copies_an_image_from_the_relay(relay: Relay, content: Content,
                                               tmp_path: Path) -> None:
    repo, tag = split_ref(content.app)
    r = ocikit.skopeo("copy", "--src-tls-verify=false",
                      f"docker://127.0.0.1:{relay.port}/{repo}:{tag}", f"oci:{tmp_path / 'o'}:x")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "blobs" / "sha256" / content.shared_layer[7:]).is_file()
    tags = json.loads(_curl(relay.url(f"/v2/{repo}/tags/list")).stdout)
    assert tags == {"name": repo, "tags": [tag]}


def test_oras_pulls_the_model_artifact(relay: Relay, tmp_path: Path) -> None:
    import oras.client

    tags = json.loads(_curl(relay.url("/v2/models/detector/tags/list")).stdout)["tags"]
    client = oras.client.OrasClient(hostname=f"127.0.0.1:{relay.port}", insecure=True)
    files = client.pull(target=f"127.0.0.1:{relay.port}/models/detector:{tags[0]}",
                        outdir=str(tmp_path / "pulled"))
    assert any(Path(f).name == "model.onnx" for f in files), files


def test_curl_range_on_a_blob_and_head(relay: Relay, content: Content) -> None:
    repo, _ = split_ref(content.app)
    url = relay.url(f"/v2/{repo}/blobs/{content.shared_layer}")
    whole = _curl("-f", url).stdout
    assert hashlib.sha256(whole).hexdigest() == content.shared_layer[7:]
    part = _curl("-f", "--range", "10-109", url)
    assert part.returncode == 0 and part.stdout == whole[10:110]
    head = _curl("-I", url).stdout.decode()
    assert f"Docker-Content-Digest: {content.shared_layer}" in head
    assert f"Content-Length: {len(whole)}" in head
    beyond = _curl("-o", "/dev/null", "-w", "%{http_code}", "--range", f"{len(whole)}-", url)
    assert beyond.stdout == b"416"


def test_a_push_is_refused(relay: Relay, content: Content, tmp_path: Path) -> None:
    repo, tag = split_ref(content.app)
    r = ocikit.skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                      f"docker://127.0.0.1:{relay.port}/{repo}:{tag}",
                      f"docker://127.0.0.1:{relay.port}/pushed:1")
    assert r.returncode != 0
    post = _curl("-X", "POST", "-w", "\n%{http_code}", relay.url("/v2/pushed/blobs/uploads/"))
    body, code = post.stdout.rsplit(b"\n", 1)
    assert code == b"405" and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    assert _curl("-o", "/dev/null", "-w", "%{http_code}",
                 relay.url("/v2/pushed/tags/list")).stdout == b"404"


def test_with_a_read_token_nothing_is_served_without_it(
        site_bundle: Path, keyset: Keys, content: Content, tmp_path: Path) -> None:
    device = init_device(tmp_path / "t", keyset)
    agent_json(device, "install", site_bundle)
    token = tmp_path / "relay.token"
    token.write_text("s3cret-token\n")
    repo, tag = split_ref(content.app)
    with relay_of(device, ocikit.free_port(), "--read-token-file", str(token)) as r:
        url = r.url(f"/v2/{repo}/manifests/{tag}")
        assert _curl("-o", "/dev/null", "-w", "%{http_code}", url).stdout == b"401"
        ok = _curl("-o", "/dev/null", "-w", "%{http_code}", "-H",
                   "Authorization: Bearer s3cret-token", url)
        assert ok.stdout == b"200"
        copied = ocikit.skopeo("copy", "--src-tls-verify=false", "--src-creds", "relay:s3cret-token",
                               f"docker://127.0.0.1:{r.port}/{repo}:{tag}", f"oci:{tmp_path / 'o'}:x")
        assert copied.returncode == 0, copied.stderr
