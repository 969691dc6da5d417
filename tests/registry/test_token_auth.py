"""The Docker token flow (Bearer), as Docker Hub, GHCR and Harbor use it.

A real docker-registry with ``auth.token`` trusts a small token server on
loopback (scripts/ocikit.py) that signs ES256 JWTs: anonymous callers may
pull ``public/…``; ``bob:pw`` may pull and push everything.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import ocikit
from tests.support.cli import run_airlock
from tests.support.keyset import Keys
from tests.support.registry import need_tools
from tests.support.spec import write_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ocikit.Registry]:
    need_tools("docker-registry", "skopeo")
    d = tmp_path_factory.mktemp("tokenreg")
    tokens = ocikit.TokenServer(d / "token", "bob", "pw")
    with tokens.serve(), ocikit.Registry.start(d / "reg", token=tokens.registry_config) as reg:
        layout = ocikit.write_image(d / "img", "1", [ocikit.random_layer(8192, seed=21)])
        for repo in ("public/app", "private/app"):
            ocikit.push(layout, "1", f"{reg.host}/{repo}:1", creds="bob:pw")
        yield reg


def _config(path: Path, host: str) -> Path:
    path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(b"bob:pw").decode()}}}))
    return path


def _build(
    keyset: Keys, tmp_path: Path, ref: str, host: str, *extra: object
) -> subprocess.CompletedProcess[str]:
    spec = write_spec(tmp_path, name="s", version="1", models=[], images=[ref])
    return run_airlock(
        "build",
        spec,
        "--key",
        keyset.release_key,
        "-o",
        tmp_path / "s.airlock",
        "--insecure",
        host,
        "--cache",
        tmp_path / "c",
        *extra,
        env={"DOCKER_CONFIG": str(tmp_path / "no-docker-config")},
    )


def test_anonymous_token_for_a_public_image(
    token_registry: ocikit.Registry, keyset: Keys, tmp_path: Path
) -> None:
    r = _build(keyset, tmp_path, f"{token_registry.host}/public/app:1", token_registry.host)
    assert r.returncode == 0, r.stderr


def test_token_with_credentials_for_a_private_image(
    token_registry: ocikit.Registry, keyset: Keys, tmp_path: Path
) -> None:
    cfg = _config(tmp_path / "config.json", token_registry.host)
    r = _build(
        keyset,
        tmp_path,
        f"{token_registry.host}/private/app:1",
        token_registry.host,
        "--registry-auth",
        cfg,
    )
    assert r.returncode == 0, r.stderr


def test_private_image_without_credentials_is_401(
    token_registry: ocikit.Registry, keyset: Keys, tmp_path: Path
) -> None:
    ref = f"{token_registry.host}/private/app:1"
    r = _build(keyset, tmp_path, ref, token_registry.host)
    assert r.returncode == 5 and ref in r.stderr and "HTTP 401" in r.stderr


def test_registry_sink_pushes_with_a_token(
    token_registry: ocikit.Registry, keyset: Keys, tmp_path: Path
) -> None:
    from tuf.api.metadata import Metadata

    from agent.sinks import make_sink
    from keys.release import Release

    cfg = _config(tmp_path / "config.json", token_registry.host)
    r = _build(keyset, tmp_path, f"{token_registry.host}/public/app:1", token_registry.host)
    assert r.returncode == 0, r.stderr
    import tarfile

    with tarfile.open(tmp_path / "s.airlock") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    release = Release.from_metadata(
        Metadata.from_bytes((tmp_path / "x/airlock/release.json").read_bytes())
    )
    sink = make_sink(
        {
            "type": "registry",
            "registry": token_registry.host,
            "insecure": True,
            "auth": str(cfg),
            "prefix": "mirror",
        },
        tmp_path,
    )
    sink.deliver(release, lambda d: tmp_path / "x/blobs/sha256" / d[7:])
    got = ocikit.skopeo(
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "bob:pw",
        f"docker://{token_registry.host}/mirror/public/app:1",
    )
    assert got.returncode == 0, got.stderr
    assert (
        got.stdout.encode()
        == (tmp_path / "x/blobs/sha256" / release.images[0].manifest[7:]).read_bytes()
    )
