"""Keys are hard to lose: generation, exposure and ``-o``, through the real command line.

The build host holds the keys that make devices trust a release. These tests
drive ``airlock`` as a release manager would, mistakes included, and check
that nothing is lost or quietly weakened:

* ``keys generate`` writes an unencrypted key only when told ``--no-passphrase``,
  and never encrypts with an empty passphrase (an exported, empty variable);
* signing with a key file group or others can open warns, and ``--strict``
  refuses before anything is written;
* ``build -o`` never lands on a file the build reads (spec, model, golden
  data, key, carried root: by name, symlink or hard link, ``--force`` or not),
  and replaces an existing file only when it is a bundle (or empty), unless
  ``--force``; ``keys init -o`` never lands on a key.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from tests.support.cli import run_airlock
from tests.support.keyset import Keys, make_keyset
from tests.support.spec import write_spec


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    """This test's own keys, so a failing guard cannot damage the session's."""
    return make_keyset(tmp_path / "keys")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _error(r: object, code: int = 2) -> str:
    """The one error line of a refused command (exit ``code``)."""
    assert r.returncode == code, (r.returncode, r.stderr)  # type: ignore[attr-defined]
    lines = r.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("airlock: error: "), lines
    return str(lines[0])


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "partial" in p.name)


# -- keys generate -------------------------------------------------------------------


def test_generate_asks_how_to_protect_the_key(tmp_path: Path) -> None:
    r = run_airlock("keys", "generate", "release", "--dir", tmp_path / "k")
    line = _error(r)
    assert "--passphrase-env VAR" in line and "--no-passphrase" in line
    assert not (tmp_path / "k" / "release.key").exists()


@pytest.mark.parametrize("env", [{"AIRLOCK_PASS": ""}, {}], ids=["empty", "unset"])
def test_generate_refuses_an_empty_or_missing_passphrase(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRLOCK_PASS", raising=False)
    r = run_airlock("keys", "generate", "release", "--dir", tmp_path / "k",
                    "--passphrase-env", "AIRLOCK_PASS", env=env)
    assert "AIRLOCK_PASS" in _error(r)
    assert not (tmp_path / "k").exists() or list((tmp_path / "k").iterdir()) == []


def test_generate_takes_one_choice_only(tmp_path: Path) -> None:
    r = run_airlock("keys", "generate", "release", "--dir", tmp_path, "--no-passphrase",
                    "--passphrase-env", "AIRLOCK_PASS", env={"AIRLOCK_PASS": "s3cret"})
    assert "not allowed with" in _error(r)
    assert not (tmp_path / "release.key").exists()


def test_an_encrypted_key_signs_only_with_its_passphrase(tmp_path: Path, keys: Keys) -> None:
    env = {"AIRLOCK_PASS": "correct horse"}
    r = run_airlock("keys", "generate", "signer", "--dir", tmp_path, "--passphrase-env",
                    "AIRLOCK_PASS", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["encrypted"] is True
    key = tmp_path / "signer.key"
    assert b"ENCRYPTED" in key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    spec = write_spec(tmp_path)
    out = tmp_path / "v1.airlock"
    assert "is encrypted" in _error(run_airlock("build", spec, "--key", key, "-o", out))
    r = run_airlock("build", spec, "--key", key, "-o", out, "--passphrase-env", "AIRLOCK_PASS",
                    env=env)
    assert r.returncode == 0, r.stderr


def test_an_unencrypted_key_is_a_stated_choice(tmp_path: Path) -> None:
    r = run_airlock("keys", "generate", "device", "--dir", tmp_path, "--no-passphrase", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["encrypted"] is False
    key = tmp_path / "device.key"
    assert b"ENCRYPTED" not in key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


# -- signing with a key others can read ------------------------------------------------


def test_an_exposed_key_warns_and_strict_refuses(tmp_path: Path, keys: Keys) -> None:
    keys.release_key.chmod(0o640)
    spec = write_spec(tmp_path)
    out = tmp_path / "v1.airlock"

    r = run_airlock("build", spec, "--key", keys.release_key, "-o", out, "--strict")
    line = _error(r)
    assert "(mode 0640)" in line and f"chmod 600 {keys.release_key}" in line
    assert not out.exists() and _leftovers(tmp_path) == []

    r = run_airlock("build", spec, "--key", keys.release_key, "-o", out)
    assert r.returncode == 0, r.stderr
    warning = [ln for ln in r.stderr.splitlines() if ln.startswith("airlock: warning: ")]
    assert len(warning) == 1 and "(mode 0640)" in warning[0]
    assert run_airlock("verify", out, "--trust", keys.trust).returncode == 0

    keys.release_key.chmod(0o600)
    r = run_airlock("build", spec, "--key", keys.release_key, "-o", out, "--strict")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def test_an_exposed_root_key_cannot_make_a_trust_root_under_strict(
    tmp_path: Path, keys: Keys
) -> None:
    keys.root_key.chmod(0o604)
    out = tmp_path / "root-new.json"
    r = run_airlock("keys", "init", "--root-key", keys.root_key, "--release-key",
                    keys.release_pub, "-o", out, "--strict")
    assert "(mode 0604)" in _error(r)
    assert not out.exists()


# -- build -o ----------------------------------------------------------------------------


def _inputs(tmp_path: Path, keys: Keys) -> dict[str, Path]:
    spec = write_spec(tmp_path)
    model_dir = tmp_path / "model-vision-1"
    return {"spec": spec, "model": model_dir / "model.onnx", "golden inputs":
            model_dir / "inputs.npz", "golden outputs": model_dir / "outputs.npz",
            "key": keys.release_key, "carried root": keys.trust}


_CLASHES = [(which, "same path") for which in ("spec", "model", "golden inputs",
                                              "golden outputs", "key", "carried root")]
_CLASHES += [("key", "symlink"), ("model", "hard link"), ("key", "--force")]


@pytest.mark.parametrize(("which", "how"), _CLASHES, ids=[f"{w}-{h}" for w, h in _CLASHES])
def test_build_never_writes_over_its_own_inputs(
    tmp_path: Path, keys: Keys, which: str, how: str
) -> None:
    inputs = _inputs(tmp_path, keys)
    target = inputs[which]
    output = target
    if how == "symlink":
        output = tmp_path / "out.airlock"
        output.symlink_to(target)
    elif how == "hard link":
        output = tmp_path / "out.airlock"
        os.link(target, output)
    before = {name: _digest(p) for name, p in inputs.items()}
    args = ["build", inputs["spec"], "--key", keys.release_key, "--root", keys.trust,
            "-o", output]
    r = run_airlock(*args, *(["--force"] if how == "--force" else []))
    assert "which this command reads" in _error(r)
    assert {name: _digest(p) for name, p in inputs.items()} == before
    assert _leftovers(target.parent) == [] and _leftovers(tmp_path) == []


def test_build_replaces_a_bundle_but_not_another_file(tmp_path: Path, keys: Keys) -> None:
    spec = write_spec(tmp_path)
    build = ["build", spec, "--key", keys.release_key, "-o"]
    notes = tmp_path / "notes.txt"
    notes.write_text("the only copy of something\n")

    line = _error(run_airlock(*build, notes))
    assert "is not an Airlock bundle" in line and "--force" in line
    assert notes.read_text() == "the only copy of something\n"

    other_key = tmp_path / "keys" / "root.key"  # a key the build does not read
    before = _digest(other_key)
    assert "is not an Airlock bundle" in _error(run_airlock(*build, other_key))
    assert _digest(other_key) == before

    # A bundle is rebuilt in place; an empty file holds nothing to lose.
    bundle = tmp_path / "v1.airlock"
    assert run_airlock(*build, bundle).returncode == 0
    assert run_airlock("build", write_spec(tmp_path, sequence=2), "--key", keys.release_key,
                       "-o", bundle).returncode == 0
    r = run_airlock("inspect", bundle, "--json")
    assert json.loads(r.stdout)["sequence"] == 2
    empty = tmp_path / "empty.airlock"
    empty.touch()
    assert run_airlock(*build, empty).returncode == 0

    r = run_airlock(*build, notes, "--force")
    assert r.returncode == 0, r.stderr
    assert run_airlock("verify", notes, "--trust", keys.trust).returncode == 0
    assert _leftovers(tmp_path) == []


def test_build_output_that_is_not_a_regular_file(tmp_path: Path, keys: Keys) -> None:
    spec = write_spec(tmp_path)
    build = ["build", spec, "--key", keys.release_key, "-o"]
    assert "is a directory" in _error(run_airlock(*build, tmp_path))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # Refused from its type, without opening it (which would block).
    assert "not a regular file" in _error(run_airlock(*build, fifo, timeout=60))
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


# -- keys init / rotate -o -------------------------------------------------------------------


def test_keys_init_never_writes_over_a_key(tmp_path: Path, keys: Keys) -> None:
    init = ["keys", "init", "--root-key", keys.root_key, "--release-key", keys.release_pub, "-o"]
    for key in (keys.root_key, keys.release_pub):
        before = _digest(key)
        assert "which this command reads" in _error(run_airlock(*init, key, "--force"))
        assert _digest(key) == before

    # Not read by this command, and not a trust root: kept unless --force.
    stray = tmp_path / "keys" / "other.key"
    stray.write_bytes(keys.release_key.read_bytes())
    assert "is not a trust root" in _error(run_airlock(*init, stray))
    assert stray.read_bytes() == keys.release_key.read_bytes()

    # An existing trust root is kept too (devices may trust it): replaced only with --force.
    assert "it is a trust root already" in _error(run_airlock(*init, keys.trust))
    assert run_airlock(*init, keys.trust, "--force").returncode == 0
    assert run_airlock(*init, stray, "--force").returncode == 0
