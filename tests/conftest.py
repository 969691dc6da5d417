"""Session-wide fixtures: real keys, a real trust root, real bundles.

The plumbing they use lives in tests/support/ (one module per concern);
test modules import it from there, never from a conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.keyset import Keys, make_keyset
from tests.support.spec import build, write_spec


@pytest.fixture(scope="session")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """A root key, a release key and a trust root trusting the release key."""
    return make_keyset(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def make_bundle(keyset: Keys, tmp_path: Path) -> Callable[..., Path]:
    """Build a real bundle in-process: make_bundle(sequence=2, wrong=True) -> NAME-SEQUENCE.airlock.

    Keyword arguments go to write_spec; ``keys`` (key files) sign instead of the release key.
    """

    def make(*, keys: list[Path] | None = None, **kw: Any) -> Path:
        spec = write_spec(tmp_path, **kw)
        return build(spec, spec.with_suffix(".airlock"), keys or [keyset.release_key])

    return make
