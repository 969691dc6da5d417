"""Fixtures for the registry tests: a real registry on loopback, and real content in it.

Debian's ``docker-registry`` runs on 127.0.0.1 with storage in a temp dir
(tests/support/registry.py pushes the content). Without the tools the tests
skip and say why, except under CI (``CI=true``), where a missing tool is a
failure.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts import ocikit
from tests.support.registry import Content, need_tools, push_content


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ocikit.Registry]:
    need_tools("docker-registry", "skopeo")
    with ocikit.Registry.start(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def content(registry: ocikit.Registry, tmp_path_factory: pytest.TempPathFactory) -> Content:
    return push_content(registry, tmp_path_factory.mktemp("content"))
