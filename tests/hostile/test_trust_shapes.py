"""What the host signs and trusts has one shape: no root nobody can satisfy, no name a device refuses.

Issue 24, class 8, through the real command line:

* ``keys init`` counts distinct keys: the same release key twice with
  ``--release-threshold 2`` (or a ring signer's key twice with threshold 2) is a
  usage error (exit 2), not a root no release can ever satisfy;
* a spec whose name ends in a newline (``name: "vision\\n"``) does not build:
  every naming rule is anchored at the very end of the text (``\\Z``, not ``$``,
  which also matches before a final newline).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from keys.signed_fields import is_plain_name
from tests.support.cli import run_airlock
from tests.support.keyset import Keys, make_keyset
from tests.support.spec import write_spec


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keyset(tmp_path / "keys")


def _error(r: object, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)  # type: ignore[attr-defined]
    lines = r.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("airlock: error: "), lines
    return str(lines[0])


def test_the_same_release_key_twice_is_one_key(tmp_path: Path, keys: Keys) -> None:
    out = tmp_path / "root.json"
    r = run_airlock("keys", "init", "--root-key", keys.root_key, "--release-key",
                    keys.release_pub, "--release-key", keys.release_pub,
                    "--release-threshold", "2", "-o", out)
    assert "release threshold 2" in _error(r) and "distinct" in r.stderr
    assert not out.exists()


def test_a_ring_signer_with_one_key_twice_is_one_key(tmp_path: Path, keys: Keys) -> None:
    out = tmp_path / "root.json"
    ring = f"canary-team:canary:{keys.release_pub},{keys.release_pub}:2"
    r = run_airlock("keys", "init", "--root-key", keys.root_key, "--release-key",
                    keys.release_pub, "--ring-signer", ring, "-o", out)
    assert "ring signer canary-team threshold 2" in _error(r)
    assert not out.exists()


@pytest.mark.parametrize("name", ["vision\n", "vision\r", "vision\n\n"])
def test_a_name_with_a_trailing_line_break_does_not_build(
    tmp_path: Path, keys: Keys, name: str
) -> None:
    assert not is_plain_name(name)
    spec = write_spec(tmp_path)  # model folder and file named plainly: only the name is odd
    doc = yaml.safe_load(spec.read_text())
    doc["name"] = name
    spec.write_text(yaml.safe_dump(doc))
    out = tmp_path / "v1.airlock"
    assert "field 'name'" in _error(run_airlock("build", spec, "--key", keys.release_key, "-o", out))
    assert not out.exists()
