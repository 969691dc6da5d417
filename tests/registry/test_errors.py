"""Registry failures a user meets: one line naming the reference, exit 1, no bundle."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import ocikit
from tests.support.cli import run_airlock
from tests.support.keyset import Keys
from tests.support.registry import Content, need_tools
from tests.support.spec import write_spec

pytestmark = pytest.mark.integration


def _build(keyset: Keys, tmp_path: Path, image: str, *extra: object) -> tuple[int, str, Path]:
    spec = write_spec(tmp_path, name="s", version="1", models=[], images=[image])
    out = tmp_path / "s.airlock"
    r = run_airlock(
        "build", spec, "--key", keyset.release_key, "-o", out, "--cache", tmp_path / "cache", *extra
    )
    return r.returncode, r.stderr, out


def test_missing_tag_names_the_reference(content: Content, keyset: Keys, tmp_path: Path) -> None:
    ref = f"{content.host}/site/app:no-such-tag"
    code, err, out = _build(keyset, tmp_path, ref, "--insecure", content.host)
    assert code == 5 and not out.exists()  # precondition: the content is not there
    assert ref in err and "404" in err and "not found" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_connection_refused_names_the_reference(keyset: Keys, tmp_path: Path) -> None:
    host = f"127.0.0.1:{ocikit.free_port()}"  # nothing listens there
    start = time.monotonic()
    code, err, out = _build(keyset, tmp_path, f"{host}/app:1", "--insecure", host)
    assert code == 5 and not out.exists()
    assert f"{host}/app:1" in err and "connection refused" in err
    assert time.monotonic() - start < 30  # retried with backoff, not for minutes


def test_https_registry_without_insecure_says_what_to_do(
    content: Content, keyset: Keys, tmp_path: Path
) -> None:
    code, err, _ = _build(keyset, tmp_path, content.app)
    assert code == 5 and f"--insecure {content.host}" in err


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ocikit.Registry]:
    need_tools("docker-registry", "skopeo")
    try:
        import bcrypt  # a dependency of paramiko, so of the [bundler] extra
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but python bcrypt (for the htpasswd file) is missing")
        pytest.skip("python bcrypt (for the htpasswd file) is not installed")
    d = tmp_path_factory.mktemp("authreg")
    htpasswd = d / "htpasswd"
    htpasswd.write_text(
        "alice:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode() + "\n"
    )
    with ocikit.Registry.start(d, htpasswd=htpasswd) as reg:
        layout = ocikit.write_image(d / "img", "1", [ocikit.random_layer(4096, seed=9)])
        ocikit.push(layout, "1", f"{reg.host}/private/app:1", creds="alice:s3cret")
        yield reg


def _docker_config(path: Path, host: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def test_401_without_credentials(
    auth_registry: ocikit.Registry, keyset: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    ref = f"{auth_registry.host}/private/app:1"
    code, err, _ = _build(keyset, tmp_path, ref, "--insecure", auth_registry.host)
    assert code == 5 and ref in err and "401" in err and "--registry-auth" in err


def test_401_with_wrong_password(
    auth_registry: ocikit.Registry, keyset: Keys, tmp_path: Path
) -> None:
    cfg = _docker_config(tmp_path / "config.json", auth_registry.host, "alice", "wrong")
    ref = f"{auth_registry.host}/private/app:1"
    code, err, _ = _build(
        keyset, tmp_path, ref, "--insecure", auth_registry.host, "--registry-auth", cfg
    )
    assert code == 5 and ref in err and "401" in err


def test_basic_auth_from_docker_config(
    auth_registry: ocikit.Registry, keyset: Keys, tmp_path: Path
) -> None:
    cfg = _docker_config(tmp_path / "config.json", auth_registry.host, "alice", "s3cret")
    ref = f"{auth_registry.host}/private/app:1"
    code, err, out = _build(
        keyset, tmp_path, ref, "--insecure", auth_registry.host, "--registry-auth", cfg
    )
    assert code == 0, err
    assert out.stat().st_size > 4096
