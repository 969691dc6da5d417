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
from tests.support.spec import write_spec


@pytest.fixture(scope="session")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """A root key, a release key and a trust root trusting the release key."""
    return make_keyset(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def make_bundle(keyset: Keys, tmp_path: Path) -> Callable[..., Path]:
    """Build a real bundle in-process: make_bundle(sequence=2, wrong=True) -> path."""
    from bundler.build import build_bundle
    from bundler.spec import load_spec
    from keys.keyfile import load_signer

    def make(*, keys: list[Path] | None = None, **kw: Any) -> Path:
        spec_path = write_spec(tmp_path, **kw)
        spec = load_spec(spec_path)
        out = tmp_path / f"{spec.name}-{spec.sequence}.airlock"
        signers = [load_signer(k) for k in (keys or [keyset.release_key])]
        build_bundle(spec, signers, out)
        return out

    return make
