"""Resource exhaustion: decompression bombs, huge metadata and manifests, deep JSON, disk.

Each case registers itself in ``tests.hostile.cases.catalogue.CASES``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

from tests.hostile.cases.catalogue import _resigned, _swap_file, case
from tests.support.kit import Kit
from tests.support.tarsurgery import (
    END,
    bundle,
    member,
    tarinfo,
)

# resources --------------------------------------------------------------------------------------


@case("bomb-gzip-bundle", "RES-bomb", "not a bundle")
def _(kit: Kit) -> bytes:
    # Bundles are never compressed; a gzip stream (here of 64 MiB of zeros) is refused unread.
    return gzip.compress(kit.good + b"\0" * (64 << 20), 9)


@case("bomb-gzip-model-inside", "RES-bomb", "sha256 is")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    fake = gzip.compress(b"\0" * (1 << 20))[: len(data)].ljust(len(data), b"\0")
    return bundle(kit.release_json, _swap_file(kit, path, fake))


@case("huge-release-header", "RES-huge", "larger than any metadata may be")
def _(kit: Kit) -> bytes:
    return member(tarinfo("airlock/release.json", 1 << 40), kit.release_json) + END


@case("huge-root-header", "RES-huge", "larger than any metadata may be")
def _(kit: Kit) -> bytes:
    return member(tarinfo("airlock/root.json", 64 << 20), b"{}") + END


@case("huge-signed-model-length", "RES-disk", "signed metadata says",
      agent_exit=(3, 5))
def _(kit: Kit) -> bytes:
    # Validly signed metadata promising a 1 TiB model: a device must not start writing it.
    path, _ = kit.blob("inputs")
    return _resigned(kit, lambda s: s["targets"][path].update(length=1 << 40))


@case("disk-many-listed-blobs", "RES-disk", "lacks", agent_exit=(3, 5),
      agent_error="needs 2000.0 GiB")
def _(kit: Kit) -> bytes:
    # 2,000 listed blobs of 1 GiB each: 2 TiB promised, none carried.
    def mutate(s: dict[str, Any]) -> None:
        for i in range(2000):
            h = hashlib.sha256(str(i).encode()).hexdigest()
            s["targets"]["blobs/sha256/" + h] = {"length": 1 << 30, "hashes": {"sha256": h}}
    return _resigned(kit, mutate)


@case("deep-json-release", "RES-deep", "not valid TUF metadata")
def _(kit: Kit) -> bytes:
    # Deep enough to exhaust any recursive parser, yet within MAX_METADATA_VALUES so the
    # parser, not the value count, is what refuses it.
    deep = b'{"signed":' + b"[" * 100_000 + b"]" * 100_000 + b',"signatures":[]}'
    return bundle(deep, kit.files)


@case("deep-json-signed-flags", "RES-deep", "deep")
def _(kit: Kit) -> bytes:
    # Validly signed, but nested deeper than any release needs.
    def mutate(s: dict[str, Any]) -> None:
        v: Any = 1
        for _ in range(500):
            v = {"a": v}
        s["airlock"]["flags"] = {"x": v}
    return _resigned(kit, mutate)


@case("deep-json-huge-integer", "RES-deep", "not valid TUF metadata")
def _(kit: Kit) -> bytes:
    d = json.loads(kit.release_json)
    d["signed"]["version"] = 123456789
    text = json.dumps(d).encode().replace(b"123456789", b"9" * 5000)
    return bundle(text, kit.files)


@case("deep-json-nan-budget", "RES-deep", "cannot be signed as JSON")
def _(kit: Kit) -> bytes:
    s = kit.signed()
    s["airlock"]["models"][0]["health"]["max_p95_ms"] = float("nan")
    payload = json.dumps(s, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    d = {"signed": s, "signatures": [kit.release.sign(payload).to_dict()]}
    return bundle(json.dumps(d).encode(), kit.files)


@case("deep-json-float-overflow", "RES-deep", "health")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0]["health"].update(runs=10**400))
