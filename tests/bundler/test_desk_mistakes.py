"""Mistakes caught at the desk, table-driven: each is one line on stderr with its documented exit.

A new user's common mistakes with specs, trust roots and keys. Each row is
the command, the exit code and the words the one line must hold; nothing is
written, and no decoder message, internal role name or traceback shows.
"""

from __future__ import annotations

import re
import tarfile
import time
from pathlib import Path

import pytest

from tests.support.cli import run_airlock
from tests.support.keyset import Keys
from tests.support.spec import write_spec

GOOD = """\
name: vision
version: "1.0"
sequence: 1
expires: 30d
models:
  - name: detector
    path: model-vision-1/model.onnx
    health: {inputs: model-vision-1/inputs.npz, outputs: model-vision-1/outputs.npz, runs: 3}
"""

# (case, replace this in GOOD, with this, exit, words the message must hold)
SPEC_MISTAKES = [
    ("version-float", 'version: "1.0"', "version: 1.10", 2,
     r"spec\.yaml:2: field 'version': must be a string: YAML reads 1\.10 as the float 1\.1; "
     r'quote it: version: "1\.10"'),
    ("version-int", 'version: "1.0"', "version: 2", 2,
     r"spec\.yaml:2: field 'version': must be a string: YAML reads 2 as the int 2"),
    ("expires-past", "expires: 30d", "expires: 2001-01-01", 2,
     r"spec\.yaml:4: field 'expires': 2001-01-01T00:00:00Z is in the past"),
    ("expires-too-soon", "expires: 30d", "expires: 2h", 2,
     r"spec\.yaml:4: field 'expires': .* is only 2h after the build, less than --min-validity 1d"),
    ("unknown-field", "models:", "modles:", 2,
     r"spec\.yaml:5: field 'modles': unknown field; did you mean 'models'\?"),
    ("unknown-nested-field", "runs: 3", "max_p95: 3", 2,
     r"spec\.yaml:8: field 'models\[0\]\.health\.max_p95': unknown field; "
     r"did you mean 'max_p95_ms'\?"),
]


@pytest.mark.parametrize("case,old,new,code,words", SPEC_MISTAKES, ids=[c[0] for c in SPEC_MISTAKES])
def test_spec_mistakes_are_one_line_naming_field_and_line(
        keyset: Keys, tmp_path: Path, case: str, old: str, new: str, code: int,
        words: str) -> None:
    write_spec(tmp_path)  # the model files GOOD names
    assert old in GOOD
    spec = write_spec(tmp_path, text=GOOD.replace(old, new), file_name="spec.yaml")
    out = tmp_path / "out.airlock"
    for cmd in (("build", spec, "--key", keyset.release_key, "-o", out), ("check", spec)):
        r = run_airlock(*cmd)
        assert r.returncode == code, (cmd[0], r.stderr)
        assert re.search(words, r.stderr), r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not out.exists()


def test_min_validity_can_be_lowered_for_a_short_lived_release(keyset: Keys,
                                                                tmp_path: Path) -> None:
    write_spec(tmp_path)
    spec = write_spec(tmp_path, text=GOOD.replace("expires: 30d", "expires: 2h"),
                      file_name="spec.yaml")
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "o.airlock",
                    "--min-validity", "1h")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("expires,extra,words", [
    ("2d", (), r"is in the past \(it is .* now; SOURCE_DATE_EPOCH dates the build"),
    ("5d", ("--min-validity", "3d"), r"is only .* after now \(it is .* less than --min-validity 3d"),
])
def test_an_old_source_date_epoch_cannot_build_a_release_already_expired_today(
        keyset: Keys, tmp_path: Path, expires: str, extra: tuple[str, ...], words: str) -> None:
    # A reproducible rebuild of a three-day-old commit: 'expires: 2d' counts from then.
    write_spec(tmp_path)
    spec = write_spec(tmp_path, text=GOOD.replace("expires: 30d", f"expires: {expires}"),
                      file_name="spec.yaml")
    three_days_ago = str(int(time.time()) - 3 * 86400)
    out = tmp_path / "out.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out, *extra,
                    env={"SOURCE_DATE_EPOCH": three_days_ago})
    assert r.returncode == 2, r.stderr
    assert re.search(words, r.stderr), r.stderr
    assert r.stderr.count("\n") == 1 and not out.exists()


def _trust_files(keyset: Keys, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    spec = write_spec(tmp_path)
    bundle = tmp_path / "v1.airlock"
    assert run_airlock("build", spec, "--key", keyset.release_key, "-o", bundle).returncode == 0
    release_json = tmp_path / "release.json"
    with tarfile.open(bundle) as tar:
        release_json.write_bytes(tar.extractfile("airlock/release.json").read())  # type: ignore[union-attr]
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 4)
    return {
        "public-key": (keyset.release_pub, "is an Airlock public key (key id "),
        "private-key": (keyset.release_key, "is a private key (PEM)"),
        "bundle": (bundle, "is an Airlock bundle"),
        "spec": (spec, "is a release spec (airlock.yaml)"),
        "release-metadata": (release_json, "is signed release metadata (release.json)"),
        "garbage": (garbage, "is binary data, not text"),
        "empty": (tmp_path / "empty.json", "is an empty file"),
    }


def test_a_trust_option_given_something_else_says_what_it_is(keyset: Keys,
                                                              tmp_path: Path) -> None:
    files = _trust_files(keyset, tmp_path)
    (tmp_path / "empty.json").write_bytes(b"")
    bundle = files["bundle"][0]
    for case, (path, words) in files.items():
        for cmd in (("verify", bundle, "--trust", path), ("inspect", bundle, "--trust", path),
                    ("build", tmp_path / "vision-1.yaml", "--key", keyset.release_key,
                     "--root", path, "-o", tmp_path / "x.airlock")):
            r = run_airlock(*cmd)
            assert r.returncode == 2, (case, cmd[0], r.stderr)
            assert words in r.stderr and "not a trust root" in r.stderr, (case, r.stderr)
            assert r.stderr.count("\n") == 1
            # Never a decoder's message or TUF's own words for the release role.
            assert not re.search(r"Expecting value|codec|'signed'|targets", r.stderr), r.stderr


def test_verify_or_inspect_of_a_key_or_spec_says_what_it_is(keyset: Keys,
                                                             tmp_path: Path) -> None:
    """The file to check is a key, a trust root or a spec: named, not a tar header error."""
    spec = write_spec(tmp_path)
    for path, words in ((keyset.release_pub, "is an Airlock public key (key id "),
                        (keyset.release_key, "is a private key (PEM)"),
                        (keyset.trust, "is a trust root"),
                        (spec, "is a release spec (airlock.yaml)")):
        for cmd in (("verify", path, "--trust", keyset.trust), ("inspect", path)):
            r = run_airlock(*cmd)
            assert r.returncode == 3, (cmd, r.stderr)
            assert f"{path} {words}" in r.stderr and "not a bundle" in r.stderr, r.stderr
            assert "header" not in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_signature_messages_name_the_release_role_as_users_do(keyset: Keys,
                                                               tmp_path: Path) -> None:
    k = tmp_path / "k"
    assert run_airlock("keys", "generate", "other", "--dir", k, "--no-passphrase").returncode == 0
    spec = write_spec(tmp_path)
    bundle = tmp_path / "b.airlock"
    assert run_airlock("build", spec, "--key", k / "other.key", "-o", bundle).returncode == 0
    r = run_airlock("verify", bundle, "--trust", keyset.trust)
    assert r.returncode == 3
    assert "required for role 'release'" in r.stderr and "targets" not in r.stderr


def test_keys_init_never_overwrites_a_trust_root_without_force(keyset: Keys,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "root.json"
    args = ("keys", "init", "--root-key", keyset.root_key, "--release-key", keyset.release_pub,
            "-o", out)
    assert run_airlock(*args).returncode == 0
    first = out.read_bytes()
    r = run_airlock(*args)
    assert r.returncode == 2 and "it is a trust root already" in r.stderr
    assert "airlock keys rotate" in r.stderr and out.read_bytes() == first
    # With --force it is replaced: a second release key makes a root that differs from
    # the first even when both are signed in the same second.
    assert run_airlock("keys", "generate", "second", "--dir", tmp_path,
                       "--no-passphrase").returncode == 0
    assert run_airlock(*args, "--release-key", tmp_path / "second.pub",
                       "--force").returncode == 0
    assert out.read_bytes() != first


def test_a_full_disk_on_the_host_is_exit_5_naming_the_path(keyset: Keys, tmp_path: Path) -> None:
    import os
    import subprocess

    small = tmp_path / "stick"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but a small tmpfs cannot be mounted: {mounted.stderr}")
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        spec = write_spec(tmp_path, pad_mb=1)
        out = small / "v1.airlock"
        r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out)
        assert r.returncode == 5, r.stderr
        assert f"no space left to write {out}" in r.stderr and r.stderr.count("\n") == 1
        # Sizes in the one unit system both tools use (airlock.console.human_size).
        assert re.search(r"needs \d+\.\d MiB and .* has \d+\.\d KiB free", r.stderr), r.stderr
        assert list(small.iterdir()) == []  # not even a partial file
    finally:
        subprocess.run(["umount", str(small)], check=True)
