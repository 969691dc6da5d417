"""Property-based fuzzing of the bundle reader and the trust checks (hypothesis).

Three mutators start from one real signed bundle:

* the signed release metadata, mutated as JSON (replace, delete, insert,
  retype any node) and then re-signed with the real release key or left with
  its old signatures;
* a rotated trust root carried in the bundle, mutated the same way and
  signed with the real root key or not at all;
* the OCI ``index.json`` and the model's manifest, mutated the same way, with
  the signed file list updated (and re-signed) or not;
* the raw tar stream: bit flips, truncation, block swaps, insertions,
  duplicated ranges.

Property: every outcome is a clean accept of a valid bundle or a clean
rejection (:class:`~airlock.errors.RejectedError`); never another exception,
and never longer than a few seconds (a hang fails the example). An accepted
bundle must be the good one in substance: the same signed file list, or, when
the fuzzer re-signed, a release whose every file was hashed and found.
Everything runs in-process for speed (seekable and pipe mode at random); a few
examples also go through ``airlock verify``, and a few through ``airlock-agent
install`` on a live device, where a rejection must leave ROOT (journal and
staging aside) byte for byte as it was and fsck clean.

Bounded for CI; for a long run::

    AIRLOCK_FUZZ_EXAMPLES=20000 pytest tests/hostile/test_fuzz.py -q -s

``AIRLOCK_FUZZ_EXAMPLES`` is the examples per mutator (default 400).
With ``AIRLOCK_RELIABILITY_OUT=FILE`` the outcome counts are appended to FILE
as JSON lines (docs/RELIABILITY.md is written from them).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.errors import RejectedError
from bundler.examine.verify import verify_bundle
from keys.trust import TrustRoot, VerifiedRelease
from tests.support.cli import run_airlock
from tests.support.device import copy_device
from tests.support.kit import Kit
from tests.support.tarsurgery import (
    BLOCK,
    bundle,
    fix_checksum,
    member,
    set_target,
    sign_dict,
    tarinfo,
)

EXAMPLES = int(os.environ.get("AIRLOCK_FUZZ_EXAMPLES", "400"))
_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
_HANG_S = 10.0


class _Pipe(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._f.readinto(b)


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _no_hang() -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise _Hang(f"no answer within {_HANG_S} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, _HANG_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _verify(data: bytes, trust: TrustRoot, pipe: bool) -> VerifiedRelease | RejectedError:
    """Accept or clean rejection; anything else propagates and fails the example."""
    stream: Any = _Pipe(data) if pipe else io.BytesIO(data)
    with _no_hang():
        try:
            return verify_bundle(stream, trust)
        except RejectedError as e:
            assert str(e) and "\n" not in str(e), f"error is not one line: {e!r}"
            return e


def _record(name: str, stats: Counter[str]) -> None:
    print(f"\nfuzz {name}: {sum(stats.values())} examples: {dict(stats.most_common())}")
    out = os.environ.get("AIRLOCK_RELIABILITY_OUT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"kind": "fuzz", "mutator": name, "examples": sum(stats.values()),
                                "outcomes": dict(stats)}) + "\n")


# -- JSON mutation -----------------------------------------------------------------

_json_leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
              | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
              | st.sampled_from(["", "../x", "/etc/passwd", "sha256:" + "0" * 64, "sha256:",
                                 "2000-01-01T00:00:00Z", "targets", "root", "canary"]))


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children,
                                                             max_size=3)


_json = st.recursive(_json_leaf, _containers, max_leaves=6)


def _nodes(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, (*path, i))


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _leaves(v)] + list(obj)
    if isinstance(obj, list):
        return [x for v in obj for x in _leaves(v)]
    return [obj]


def _mutate_json(data: st.DataObject, doc: Any, rounds: int) -> Any:
    """Apply ``rounds`` random structural mutations to a JSON document (a copy)."""
    doc = json.loads(json.dumps(doc))
    for _ in range(rounds):
        paths = list(_nodes(doc))
        path = data.draw(st.sampled_from(paths))
        kind = data.draw(st.sampled_from(["replace", "delete", "insert", "retype", "swap"]))
        leaves = _leaves(doc)
        value = data.draw(_json | st.sampled_from(leaves) if leaves else _json)
        if not path:
            if kind == "replace":
                doc = value
            continue
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        key, old = path[-1], parent[path[-1]]
        if kind == "replace" or kind == "swap":
            parent[key] = value
        elif kind == "delete":
            del parent[key]
        elif kind == "insert":
            if isinstance(old, dict):
                old[data.draw(st.text(max_size=8) | st.sampled_from(list(old) or ["x"]))] = value
            elif isinstance(old, list):
                old.insert(data.draw(st.integers(0, len(old))), value)
            else:
                parent[key] = [old, value]
        elif kind == "retype":
            parent[key] = (str(old) if not isinstance(old, str)
                           else int(old) if old.isdigit() and len(old) < 100 else [old])
    return doc


def _sign(signed: Any, kit: Kit) -> list[dict[str, str]]:
    try:
        payload = json.dumps(signed, sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError):
        payload = json.dumps(signed, sort_keys=True, ensure_ascii=False).encode()
    return [kit.release.sign(payload).to_dict()]


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def trust(kit: Kit) -> TrustRoot:
    return TrustRoot.from_bytes(kit.trust_path.read_bytes())


def _expect_good(v: VerifiedRelease, kit: Kit) -> None:
    """An accepted bundle is the good release in substance."""
    good = json.loads(kit.release_json)["signed"]
    assert {p: (i.length, i.sha256) for p, i in v.release.files.items()} == {
        p: (t["length"], t["hashes"]["sha256"]) for p, t in good["targets"].items()}


# -- the properties ------------------------------------------------------------------


def test_fuzz_signed_metadata(kit: Kit, trust: TrustRoot) -> None:
    stats: Counter[str] = Counter()
    original = json.loads(kit.release_json)

    @_SETTINGS
    @given(data=st.data(), rounds=st.integers(1, 3), resign=st.booleans(), pipe=st.booleans())
    def run(data: st.DataObject, rounds: int, resign: bool, pipe: bool) -> None:
        signed = _mutate_json(data, original["signed"], rounds)
        sigs = _sign(signed, kit) if resign else original["signatures"]
        out = _verify(bundle(_dumps({"signed": signed, "signatures": sigs}), kit.files), trust, pipe)
        if isinstance(out, RejectedError):
            stats[f"rejected {type(out).__name__}"] += 1
            return
        stats["accepted"] += 1
        # Every accepted file was hashed against the list the (possibly new) signature covers.
        assert set(out.release.files) <= {p for p, _ in kit.files}
        if not resign:
            _expect_good(out, kit)

    run()
    _record("signed-metadata", stats)
    assert stats["accepted"] < sum(stats.values())


def test_fuzz_carried_trust_root(kit: Kit, trust: TrustRoot) -> None:
    """A rotated root carried in the bundle, mutated, signed by the real root key or not."""
    stats: Counter[str] = Counter()
    base = kit.trust_signed()
    base["version"] = 2

    @_SETTINGS
    @given(data=st.data(), rounds=st.integers(1, 3), resign=st.booleans(), pipe=st.booleans())
    def run(data: st.DataObject, rounds: int, resign: bool, pipe: bool) -> None:
        signed = _mutate_json(data, base, rounds)
        root_json = _dumps({"signed": signed, "signatures": []})
        if resign:
            with contextlib.suppress(Exception):  # TUF's canonical JSON refuses floats
                root_json = sign_dict(signed, [kit.root], release_form=False)
        out = _verify(bundle(kit.release_json, kit.files, root_json=root_json), trust, pipe)
        if isinstance(out, RejectedError):
            stats[f"rejected {type(out).__name__}"] += 1
            return
        stats["accepted"] += 1
        _expect_good(out, kit)

    run()
    _record("carried-root", stats)


def test_fuzz_oci_index_and_manifest(kit: Kit, trust: TrustRoot) -> None:
    stats: Counter[str] = Counter()
    files = dict(kit.files)
    manifest_path = kit.blob("manifest")[0]

    @_SETTINGS
    @given(data=st.data(), which=st.sampled_from(["index.json", manifest_path]),
           rounds=st.integers(1, 3), resign=st.booleans(), pipe=st.booleans())
    def run(data: st.DataObject, which: str, rounds: int, resign: bool, pipe: bool) -> None:
        doc = _mutate_json(data, json.loads(files[which]), rounds)
        new = _dumps(doc)
        signed = kit.signed()
        if which == "index.json":
            out_files = [(p, new if p == which else d) for p, d in kit.files]
        else:
            # A manifest is named by its digest: move it and fix every reference.
            old_hex, new_hex = which[13:], hashlib.sha256(new).hexdigest()
            signed = json.loads(json.dumps(signed).replace(old_hex, new_hex))
            index = files["index.json"].replace(old_hex.encode(), new_hex.encode())
            index = index.replace(b'"size":%d' % len(files[which]), b'"size":%d' % len(new))
            out_files = [("blobs/sha256/" + new_hex, new) if p == which
                         else ("index.json", index) if p == "index.json" else (p, d)
                         for p, d in kit.files]
            set_target(signed, which, None)
            set_target(signed, "blobs/sha256/" + new_hex, new)
            set_target(signed, "index.json", index)
        if which == "index.json":
            set_target(signed, which, new)
        release = (_dumps({"signed": signed, "signatures": _sign(signed, kit)}) if resign
                   else kit.release_json)
        out = _verify(bundle(release, out_files), trust, pipe)
        if isinstance(out, RejectedError):
            stats[f"rejected {type(out).__name__}"] += 1
            return
        stats["accepted"] += 1
        if not resign:
            _expect_good(out, kit)

    run()
    _record("oci-index-manifest", stats)


def test_fuzz_tar_stream(kit: Kit, trust: TrustRoot) -> None:
    stats: Counter[str] = Counter()
    good = kit.good
    n_blocks = len(good) // BLOCK
    headers = [at for at in range(0, len(good), BLOCK) if good[at + 257:at + 262] == b"ustar"]
    fields = [(0, 100), (100, 108), (124, 136), (136, 148), (156, 157), (157, 257), (257, 265),
              (329, 345), (345, 500)]
    pax_keys = ["path", "size", "linkpath", "mtime", "uid", "hdrcharset", "GNU.sparse.major",
                "GNU.sparse.minor", "GNU.sparse.map", "GNU.sparse.size", "GNU.sparse.realsize",
                "GNU.sparse.name", "comment"]

    @_SETTINGS
    @given(data=st.data(), kind=st.sampled_from(["flip", "truncate", "swap", "insert", "duplicate",
                                                 "zero-block", "header", "header", "pax", "pax"]),
           pipe=st.booleans())
    def run(data: st.DataObject, kind: str, pipe: bool) -> None:
        b = bytearray(good)
        if kind == "flip":
            for _ in range(data.draw(st.integers(1, 8))):
                at = data.draw(st.integers(0, len(b) - 1))
                b[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "truncate":
            del b[data.draw(st.integers(0, len(b) - 1)):]
        elif kind == "swap":
            i, j = (data.draw(st.integers(0, n_blocks - 1)) for _ in range(2))
            bi, bj = b[i * BLOCK:(i + 1) * BLOCK], b[j * BLOCK:(j + 1) * BLOCK]
            b[i * BLOCK:(i + 1) * BLOCK], b[j * BLOCK:(j + 1) * BLOCK] = bj, bi
        elif kind == "insert":
            at = data.draw(st.integers(0, len(b)))
            b[at:at] = data.draw(st.binary(min_size=1, max_size=2 * BLOCK))
        elif kind == "duplicate":
            i = data.draw(st.integers(0, n_blocks - 1))
            k = data.draw(st.integers(1, 4))
            b[i * BLOCK:i * BLOCK] = b[i * BLOCK:(i + k) * BLOCK]
        elif kind == "header":
            # Rewrite a header field and fix the checksum: the parser, not the checksum, decides.
            at = data.draw(st.sampled_from(headers))
            lo, hi = data.draw(st.sampled_from(fields))
            value = data.draw(st.binary(min_size=hi - lo, max_size=hi - lo)
                              | st.text("01234567 \0", min_size=hi - lo, max_size=hi - lo).map(
                                  lambda t: t.encode()))
            b[at + lo:at + hi] = value
            b[at:at + BLOCK] = fix_checksum(bytes(b[at:at + BLOCK]))
        elif kind == "pax":
            # An extra pax extended header in front of some member.
            at = data.draw(st.sampled_from(headers))
            records = data.draw(st.dictionaries(
                st.sampled_from(pax_keys),
                st.text(max_size=30) | st.integers(-5, 2**40).map(str)
                | st.sampled_from(["1", "0", "0,10", "0,10,20,30", "../x", "airlock/release.json"]),
                min_size=1, max_size=4))
            ti = tarinfo("blobs/sha256/" + "0" * 64, 0)
            ti.pax_headers = records
            try:
                head = member(ti)[:-BLOCK]  # the pax header blocks only (drop the dummy)
            except (ValueError, UnicodeError):
                return
            b[at:at] = head
        else:
            i = data.draw(st.integers(0, n_blocks - 1))
            b[i * BLOCK:(i + 1) * BLOCK] = bytes(BLOCK)
        out = _verify(bytes(b), trust, pipe)
        if isinstance(out, RejectedError):
            stats[f"rejected {type(out).__name__}"] += 1
            return
        stats["accepted"] += 1
        _expect_good(out, kit)  # a flip in padding or an mtime is harmless; content is not

    run()
    _record("tar-stream", stats)
    assert stats["accepted"] < sum(stats.values())


def test_fuzz_through_cli(kit: Kit, tmp_path: Path) -> None:
    """A few mutated bundles through the real command: exit 0 or 3, one line, no traceback."""
    stats: Counter[str] = Counter()
    path = tmp_path / "fuzzed.airlock"

    @settings(_SETTINGS, max_examples=max(10, EXAMPLES // 20))
    @given(flips=st.lists(st.tuples(st.integers(0, len(kit.good) - 1), st.integers(0, 7)),
                          min_size=1, max_size=6),
           cut=st.none() | st.integers(0, len(kit.good)))
    def run(flips: list[tuple[int, int]], cut: int | None) -> None:
        b = bytearray(kit.good)
        for at, bit in flips:
            b[at] ^= 1 << bit
        path.write_bytes(bytes(b[:cut]))
        r = run_airlock("verify", path, "--trust", kit.trust_path, timeout=30)
        assert r.returncode in (0, 3), r.stderr
        assert "Traceback" not in r.stderr
        if r.returncode:
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("airlock: error: "), r.stderr
        stats["accepted" if r.returncode == 0 else "rejected"] += 1

    run()
    _record("cli", stats)


@pytest.fixture(scope="module")
def device(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.cli import run_agent

    root = tmp_path_factory.mktemp("fuzz-device") / "root"
    assert run_agent("--root", root, "init", "--trust", kit.trust_path,
                     "--device-id", "fuzz").returncode == 0
    active = root.parent / "active.airlock"
    active.write_bytes(kit.active)
    r = run_agent("--root", root, "install", active)
    assert r.returncode == 0, r.stderr
    return root


def test_fuzz_agent_install(kit: Kit, device: Path, tmp_path: Path) -> None:
    """Mutated bundles through ``airlock-agent install``: installed whole, or ROOT untouched."""
    import subprocess

    from agent.fsck import fsck
    from agent.layout import Layout
    from agent.switch import read_link
    from tests.support.cli import run_agent
    from tests.support.treehash import listing

    stats: Counter[str] = Counter()
    path = tmp_path / "fuzzed.airlock"
    runs = iter(range(10**6))

    @settings(_SETTINGS, max_examples=max(10, EXAMPLES // 40))
    @given(flips=st.lists(st.tuples(st.integers(0, len(kit.good) - 1), st.integers(0, 7)),
                          max_size=4),
           cut=st.none() | st.integers(0, len(kit.good)))
    def run(flips: list[tuple[int, int]], cut: int | None) -> None:
        b = bytearray(kit.good)
        for at, bit in flips:
            b[at] ^= 1 << bit
        path.write_bytes(bytes(b[:cut]))
        root = copy_device(device, tmp_path / f"device-{next(runs)}")
        skip = {"journal.jsonl", "staging"}
        before = listing(root, skip=skip)
        r = run_agent("--root", root, "install", path, timeout=60)
        assert "Traceback" not in r.stderr
        assert r.returncode in (0, 3), r.stderr
        if r.returncode == 3:
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert listing(root, skip=skip) == before, "a rejected install changed ROOT"
            stats["rejected"] += 1
        else:
            assert read_link(Layout(root), "current") == "vision-5"
            stats["installed"] += 1
        assert fsck(Layout(root))["ok"]
        subprocess.run(["rm", "-rf", str(root)], check=True)

    run()
    _record("agent-install", stats)
