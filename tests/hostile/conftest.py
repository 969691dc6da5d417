"""Fixtures for the hostile-media tests: one real signed bundle per session, taken apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import REPO
from tests.support.kit import Kit


@pytest.fixture(scope="session")
def kit(keyset: Any, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return Kit.create(tmp_path_factory.mktemp("kit"), root_key=keyset.root_key,
                      release_key=keyset.release_key)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
