"""Fixtures for the relay tests: a registry with real content, a release built from it, a relay.

A "site" release (a local model padded to 96 MB, so a transfer can be cut
mid-blob, and two images from Debian's ``docker-registry`` on loopback) is
installed on device A, whose ``airlock-agent serve --registry`` is the relay
the tests pull from (tests/support/relay.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import ocikit
from tests.support.keyset import Keys
from tests.support.registry import Content, build_from, need_tools, push_content
from tests.support.spec import write_spec


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ocikit.Registry]:
    need_tools("docker-registry", "skopeo")
    with ocikit.Registry.start(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def content(registry: ocikit.Registry, tmp_path_factory: pytest.TempPathFactory) -> Content:
    return push_content(registry, tmp_path_factory.mktemp("content"))


@pytest.fixture(scope="session")
def site_bundle(content: Content, keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("site")
    spec = write_spec(d, name="site", images=[content.app, content.worker], pad_mb=96)
    out = d / "site-1.airlock"
    build_from(content.host, keyset, spec, out, d / "cache")
    return out
