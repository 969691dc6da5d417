"""Signatures collected one at a time: ``airlock sign``, detached signatures, the metadata slot.

Real keys, real bundles, the real command line. What a release team would
notice: a threshold met by separate signers, each adding one signature
without one blob byte changing; a signature for other metadata refused;
nothing signed without a yes; a crash mid-sign (kill -9) that the next sign
finishes; a bundle one signature short that installs nowhere.
"""

from __future__ import annotations

import base64
import fcntl
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from airlock.format.bundle import BundleReader
from bundler.signing.slot_rewrite import intent_path
from tests.support.cli import run_agent, run_airlock, tool_env
from tests.support.device import agent_json
from tests.support.spec import write_spec
from tests.support.tarsurgery import bundle as tar_bundle
from tests.support.terminal import answering
from tests.support.treehash import tree_hash


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Release keys a, b, c (2 of 3 must sign), a root key, and the trust root."""
    from keys.keyfile import generate_keypair, load_public_key, load_signer
    from keys.trust import create_root

    d = tmp_path_factory.mktemp("team")
    keys = {n: generate_keypair(n, d)[0] for n in ("root", "a", "b", "c", "stranger")}
    md = create_root([load_signer(keys["root"])],
                     [load_public_key(keys[n].with_suffix(".pub")) for n in "abc"],
                     release_threshold=2)
    (d / "root.json").write_bytes(md.to_bytes())
    return {**keys, "trust": d / "root.json", "dir": d}


def _build(tmp: Path, *keys: Path, sequence: int = 1, name: str = "v.airlock",
           env: dict[str, str] | None = None) -> Path:
    spec = write_spec(tmp, sequence=sequence)
    out = tmp / name
    args = [a for k in keys for a in ("--key", k)] or ["--unsigned"]
    r = run_airlock("build", spec, *args, "-o", out, env=env)
    assert r.returncode == 0, r.stderr
    return out


def _sign(bundle: Path, *args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run_airlock("sign", bundle, *args, "--yes", **kw)


def _verify(bundle: Path, trust: Path) -> subprocess.CompletedProcess[str]:
    return run_airlock("verify", bundle, "--trust", trust, "--json")


def _outside_slot(bundle: Path) -> tuple[int, bytes]:
    """The bundle's bytes with its metadata slot cut out, and where the slot starts."""
    data = bundle.read_bytes()
    with bundle.open("rb") as f:
        head = BundleReader(f).head()
    return head.slot_offset, data[: head.slot_offset] + data[head.slot_offset + head.slot_size :]


def _members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar if m.name != "airlock/release.json"}


def _signed_sha256(bundle: Path) -> str:
    r = run_airlock("inspect", bundle, "--json")
    assert r.returncode == 0, r.stderr
    return str(json.loads(r.stdout)["signed_sha256"])


# -- a threshold met one signer at a time --------------------------------------------------


def test_two_of_three_met_by_three_separate_signs_blobs_untouched(team: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    bundle = _build(tmp_path)
    r = _verify(bundle, team["trust"])
    assert r.returncode == 3 and "0 of 2 signatures required for role 'release'" in r.stderr
    size = bundle.stat().st_size
    for n, key in enumerate(("a", "b", "c"), start=1):
        offset, before = _outside_slot(bundle)
        r = _sign(bundle, "--key", team[key], "--trust", team["trust"], "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["in_place"] and len(out["signers"]) == n
        assert out["tally"] == {"role": "release", "valid": n, "threshold": 2,
                                "complete": n >= 2}
        # Only the slot's bytes changed: every header, every blob, where it was.
        assert bundle.stat().st_size == size
        assert _outside_slot(bundle) == (offset, before)
        r = _verify(bundle, team["trust"])
        if n == 1:
            assert r.returncode == 3 and "1 of 2 signatures required for role 'release'" in r.stderr
        else:
            assert r.returncode == 0, r.stderr
            assert len(json.loads(r.stdout)["signers"]) == n
    assert not intent_path(bundle).exists()


def test_one_signature_short_installs_nowhere(team: dict[str, Path], tmp_path: Path) -> None:
    bundle = _build(tmp_path, team["a"])
    device = tmp_path / "device"
    assert run_agent("--root", device, "init", "--trust", team["trust"]).returncode == 0
    before = tree_hash(device)
    r = run_agent("--root", device, "install", bundle)
    assert r.returncode == 3
    assert "1 of 2 signatures required for role 'release'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert tree_hash(device) == before
    assert agent_json(device, "status")["active"] is None


def test_detached_signatures_merged_by_a_coordinator(team: dict[str, Path],
                                                     tmp_path: Path) -> None:
    bundle = _build(tmp_path, team["a"])
    sigs = []
    for who in ("b", "c"):  # each on their own machine, with their own copy
        machine = tmp_path / f"machine-{who}"
        machine.mkdir()
        copy = machine / bundle.name
        copy.write_bytes(bundle.read_bytes())
        sig = machine / f"{who}.sig.json"
        r = _sign(copy, "--detached", "--key", team[who], "-o", sig)
        assert r.returncode == 0, r.stderr
        assert copy.read_bytes() == bundle.read_bytes()  # a detached signature changes nothing
        assert sig.stat().st_size < 2048
        sigs.append(sig)
    _, before = _outside_slot(bundle)
    r = run_airlock("sign", "--merge", *sigs, bundle, "--trust", team["trust"], "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tally"]["valid"] == 3
    assert _outside_slot(bundle)[1] == before
    r = _verify(bundle, team["trust"])
    assert r.returncode == 0 and len(json.loads(r.stdout)["signers"]) == 3


def test_signature_over_other_metadata_is_refused_with_both_digests(
        team: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    x = _build(tmp_path / "x", team["a"], sequence=1)
    y = _build(tmp_path / "y", team["a"], sequence=2)
    sig = tmp_path / "b.sig.json"
    assert _sign(x, "--detached", "--key", team["b"], "-o", sig).returncode == 0
    before = y.read_bytes()
    r = run_airlock("sign", "--merge", sig, y)
    assert r.returncode == 3, r.stderr
    assert "over other metadata" in r.stderr
    assert _signed_sha256(x)[:16] in r.stderr and _signed_sha256(y)[:16] in r.stderr
    assert y.read_bytes() == before


def test_forged_or_oversized_detached_signature_is_refused(team: dict[str, Path],
                                                           tmp_path: Path) -> None:
    bundle = _build(tmp_path, team["a"])
    sig = tmp_path / "b.sig.json"
    assert _sign(bundle, "--detached", "--key", team["b"], "-o", sig).returncode == 0
    doc = json.loads(sig.read_text())
    doc["signature"]["sig"] = doc["signature"]["sig"][::-1]
    forged = tmp_path / "forged.sig.json"
    forged.write_text(json.dumps(doc))
    big = tmp_path / "big.sig.json"
    big.write_bytes(b" " * (1 << 20))
    before = bundle.read_bytes()
    for bad, says in ((forged, "does not verify"), (big, "at most")):
        r = run_airlock("sign", "--merge", bad, bundle)
        assert r.returncode == 3 and says in r.stderr, r.stderr
    assert bundle.read_bytes() == before


# -- what a signer sees and decides ---------------------------------------------------------


def test_nothing_is_signed_without_a_yes(team: dict[str, Path], tmp_path: Path) -> None:
    bundle = _build(tmp_path, team["a"])
    before = bundle.read_bytes()
    r = run_airlock("sign", bundle, "--key", team["b"], stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "pass --yes" in r.stderr
    with answering(b"n\n") as tty:
        r = run_airlock("sign", bundle, "--key", team["b"], stdin=tty)
    assert r.returncode == 2 and "not confirmed" in r.stderr
    assert bundle.read_bytes() == before
    with answering(b"y\n") as tty:
        r = run_airlock("sign", bundle, "--key", team["b"], stdin=tty)
    assert r.returncode == 0, r.stderr
    shown = r.stderr
    for what in ("About to sign release vision 1.0 (sequence 1)", "model detector",
                 "rings: every ring", f"signed sha256 {_signed_sha256(bundle)}",
                 "signed already by:", str(team["b"]), "Sign? [y/N]"):
        assert what in shown, (what, shown)


def test_a_key_the_trust_root_does_not_know_is_refused(team: dict[str, Path],
                                                      tmp_path: Path) -> None:
    bundle = _build(tmp_path, team["a"])
    before = bundle.read_bytes()
    r = _sign(bundle, "--key", team["stranger"], "--trust", team["trust"])
    assert r.returncode == 2 and "would count for nothing" in r.stderr
    assert bundle.read_bytes() == before


def test_sign_to_a_new_file_gives_the_bundle_built_with_both_keys(
        team: dict[str, Path], tmp_path: Path) -> None:
    # One build time for both (an hour ago: an epoch older than the release's lifetime
    # would make a bundle that is already expired today, which build refuses).
    epoch = {"SOURCE_DATE_EPOCH": str(int(time.time()) - 3600)}
    both = _build(tmp_path, team["a"], team["b"], name="both.airlock", env=epoch)
    one = _build(tmp_path, team["a"], name="one.airlock", env=epoch)
    before = one.read_bytes()
    later = tmp_path / "later.airlock"
    r = _sign(one, "--key", team["b"], "-o", later, "--json")
    assert r.returncode == 0, r.stderr
    assert not json.loads(r.stdout)["in_place"]
    assert one.read_bytes() == before
    # Reproducible: the same signatures give the same bytes, however they were collected.
    assert later.read_bytes() == both.read_bytes()


def test_a_split_bundle_is_signed_detached_never_in_place(team: dict[str, Path],
                                                          tmp_path: Path) -> None:
    from bundler.sneakernet.split import split_bundle

    bundle = _build(tmp_path, team["a"])
    parts = split_bundle(bundle, bundle.stat().st_size // 3 + 1)
    first = parts.parts[0].path
    before = {p.path: p.path.read_bytes() for p in parts.parts}
    # Its parts.json holds each part's sha256: a slot rewritten in a part would break it.
    for out in ((), ("-o", tmp_path / "copy.airlock")):
        r = _sign(first, "--key", team["b"], *out)
        assert r.returncode == 2 and "part of a split bundle" in r.stderr, r.stderr
    sig = tmp_path / "b.sig.json"
    r = _sign(first, "--detached", "--key", team["b"], "-o", sig)
    assert r.returncode == 0, r.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "copy.airlock").exists()
    # The whole bundle the parts were cut from takes the signature made over them.
    assert run_airlock("sign", "--merge", sig, bundle).returncode == 0
    assert _verify(bundle, team["trust"]).returncode == 0


def test_a_slot_keeps_its_spare_room_only_while_readers_take_it() -> None:
    from airlock.format.slot import SLOT_BLOCK, SLOT_SPARE, metadata_slot
    from airlock.limits import MAX_METADATA_BYTES

    small = metadata_slot(b"{}")
    assert len(small) % SLOT_BLOCK == 0 and len(small) >= 2 + SLOT_SPARE
    # Metadata near the bound gets a slot no larger than a reader takes, not 8 KiB past it.
    near = b'{"x": "' + b"a" * (MAX_METADATA_BYTES - 100) + b'"}'
    assert len(metadata_slot(near)) == MAX_METADATA_BYTES


def test_a_full_slot_is_copied_around_blobs_unchanged(team: dict[str, Path],
                                                      tmp_path: Path) -> None:
    built = _build(tmp_path, team["a"])
    with built.open("rb") as f:
        release_json = BundleReader(f).head().release_json
    members = _members(built)
    # A bundle as written before the slot existed: metadata with no room to spare.
    old = tmp_path / "old.airlock"
    old.write_bytes(tar_bundle(release_json, [(k, v) for k, v in members.items()]))
    r = _sign(old, "--key", team["b"], "--json")
    assert r.returncode == 0, r.stderr
    assert not json.loads(r.stdout)["in_place"]
    assert _members(old) == members
    assert _verify(old, team["trust"]).returncode == 0
    assert not list(tmp_path.glob(".*partial"))


def test_a_bundle_carrying_a_root_keeps_it_when_copied(team: dict[str, Path],
                                                       tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    bundle = tmp_path / "rooted.airlock"
    r = run_airlock("build", spec, "--key", team["a"], "--root", team["trust"], "-o", bundle)
    assert r.returncode == 0, r.stderr
    copy = tmp_path / "signed.airlock"
    assert _sign(bundle, "--key", team["b"], "-o", copy).returncode == 0
    assert _members(copy) == _members(bundle)  # airlock/root.json and every blob, unchanged
    assert _verify(copy, team["trust"]).returncode == 0


# -- crashes and concurrency ----------------------------------------------------------------

_CRASHING_SIGNER = """
import os, signal, sys
from pathlib import Path
from airlock.format.bundle import BundleReader
from bundler.signing.slot_rewrite import locked_bundle, rewrite_in_place
from keys.keyfile import load_signer
from keys.signatures import Signable

path, key, step = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
with locked_bundle(path) as f:
    head = BundleReader(f).head()
    doc = Signable.from_bytes(head.release_json, "release")
    new = doc.with_signatures([doc.sign(load_signer(key))])
    def crash(at):
        if at == step:
            os.kill(os.getpid(), signal.SIGKILL)
    rewrite_in_place(path, f, head, new, crash=crash)
"""


@pytest.mark.parametrize("step", ["after-intent", "after-slot"])
def test_sign_killed_midway_is_finished_by_the_next(team: dict[str, Path], tmp_path: Path,
                                                    step: str) -> None:
    bundle = _build(tmp_path)
    _, before = _outside_slot(bundle)
    p = subprocess.run([sys.executable, "-c", _CRASHING_SIGNER, str(bundle), str(team["a"]), step],
                       env=tool_env(), capture_output=True, timeout=120)
    assert p.returncode == -9, p.stderr
    assert intent_path(bundle).exists()
    r = _sign(bundle, "--key", team["b"], "--json")
    assert r.returncode == 0, r.stderr
    assert not intent_path(bundle).exists()
    assert _outside_slot(bundle)[1] == before
    # The killed signer's signature was rolled forward, then b's added.
    r = _verify(bundle, team["trust"])
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["signers"]) == 2


def test_torn_slot_installs_nowhere_until_the_next_sign_finishes_it(
        team: dict[str, Path], tmp_path: Path) -> None:
    bundle = _build(tmp_path, team["a"])
    p = subprocess.run([sys.executable, "-c", _CRASHING_SIGNER, str(bundle), str(team["b"]),
                        "after-intent"], env=tool_env(), capture_output=True, timeout=120)
    assert p.returncode == -9
    # The power went mid-write: the first sector of the new slot reached the disk.
    record = intent_path(bundle).read_bytes()
    header, _, slot = record.partition(b"\n")
    offset = json.loads(header)["offset"]
    data = bytearray(bundle.read_bytes())
    data[offset : offset + 512] = slot[:512]
    bundle.write_bytes(bytes(data))
    assert _verify(bundle, team["trust"]).returncode == 3
    r = _sign(bundle, "--key", team["c"])
    assert r.returncode == 0, r.stderr
    r = _verify(bundle, team["trust"])
    assert r.returncode == 0 and len(json.loads(r.stdout)["signers"]) == 3


def test_a_torn_intent_record_never_reached_the_bundle(team: dict[str, Path],
                                                        tmp_path: Path) -> None:
    bundle = _build(tmp_path, team["a"])
    p = subprocess.run([sys.executable, "-c", _CRASHING_SIGNER, str(bundle), str(team["b"]),
                        "after-intent"], env=tool_env(), capture_output=True, timeout=120)
    assert p.returncode == -9
    record = intent_path(bundle)
    record.write_bytes(record.read_bytes()[:-100])  # the crash came while it was written
    r = _sign(bundle, "--key", team["c"], "--json")
    assert r.returncode == 0, r.stderr
    assert not record.exists()
    assert sorted(json.loads(r.stdout)["signers"]) == sorted(
        json.loads(_verify(bundle, team["trust"]).stdout)["signers"])
    assert len(json.loads(r.stdout)["signers"]) == 2  # a and c: b's write never happened


def test_a_second_signer_at_the_same_time_is_turned_away(team: dict[str, Path],
                                                         tmp_path: Path) -> None:
    bundle = _build(tmp_path, team["a"])
    before = bundle.read_bytes()
    with bundle.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        r = _sign(bundle, "--key", team["b"])
    assert r.returncode == 5 and "another 'airlock sign'" in r.stderr
    assert bundle.read_bytes() == before


# -- CI keys and the device ----------------------------------------------------------------


def test_ci_signs_with_a_key_from_its_environment_no_file(team: dict[str, Path],
                                                          tmp_path: Path) -> None:
    from keys.keyfile import load_public_key, load_signer
    from keys.trust import create_root

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    env = {"CI_KEY": pem.decode(), "CI_KEY_B64": base64.b64encode(pem).decode()}
    keys = tmp_path / "keys"
    r = run_airlock("keys", "import-public", "ci", "--uri", "envvar:CI_KEY", "--dir", keys,
                    "--json", env=env)
    assert r.returncode == 0, r.stderr
    ci_pub = keys / "ci.pub"
    trust = tmp_path / "root.json"
    release_keys = [load_public_key(ci_pub), load_public_key(team["b"].with_suffix(".pub"))]
    trust.write_bytes(create_root([load_signer(team["root"])], release_keys,
                                  release_threshold=2).to_bytes())
    for uri in ("envvar:CI_KEY", "envvar:CI_KEY_B64"):
        spec = write_spec(tmp_path)
        bundle = tmp_path / f"{uri[7:]}.airlock"
        r = run_airlock("build", spec, "--key", uri, "-o", bundle, env=env)
        assert r.returncode == 0, r.stderr
        r = _verify(bundle, trust)
        assert r.returncode == 3 and "1 of 2 signatures" in r.stderr
        assert _sign(bundle, "--key", team["b"]).returncode == 0  # a person, later
        assert _verify(bundle, trust).returncode == 0
    # No file anywhere holds the CI key.
    body = pem.split(b"\n")[1]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and body in p.read_bytes()]
    r = run_airlock("build", write_spec(tmp_path), "--key", "envvar:NOT_SET", "-o",
                    tmp_path / "x.airlock")
    assert r.returncode == 2 and "NOT_SET" in r.stderr and not (tmp_path / "x.airlock").exists()


def test_a_device_takes_its_release_signed_once_more_as_the_same(
        team: dict[str, Path], tmp_path: Path) -> None:
    bundle = _build(tmp_path, team["a"], team["b"])
    device = tmp_path / "device"
    assert run_agent("--root", device, "init", "--trust", team["trust"]).returncode == 0
    assert agent_json(device, "install", bundle)["installed"]
    assert _sign(bundle, "--key", team["c"]).returncode == 0
    again = agent_json(device, "install", bundle)
    assert not again["installed"] and again["active"] == "vision-1"


def test_quiet_sign_with_yes_prints_nothing_and_still_signs(team: dict[str, Path],
                                                            tmp_path: Path) -> None:
    bundle = _build(tmp_path)
    r = _sign(bundle, "--key", team["a"], "-q")
    assert r.returncode == 0, r.stderr
    assert (r.stdout, r.stderr) == ("", "")
    loud = _sign(bundle, "--key", team["b"])
    assert "with key" in loud.stderr  # without -q the summary is shown
    assert _verify(bundle, team["trust"]).returncode == 0
