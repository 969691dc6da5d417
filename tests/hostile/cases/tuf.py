"""The TUF attacks on the metadata: arbitrary software, rollback, fast-forward, freeze,
endless data, extraneous dependencies, mix-and-match, wrong software, keys below the threshold.

Each case registers itself in ``tests.hostile.cases.catalogue.CASES``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from tests.hostile.cases.catalogue import _resigned, _swap_file, _when, case
from tests.support.kit import ACTIVE_SEQUENCE, Kit
from tests.support.tarsurgery import (
    bundle,
    member,
    regular,
    set_target,
    sign_dict,
    tarinfo,
)

# TUF: arbitrary installation ----------------------------------------------------


@case("arbitrary-rogue-key", "TUF-arbitrary", "signed by unknown key")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(version="evil"), [kit.rogue])


@case("arbitrary-unsigned", "TUF-arbitrary", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    d = json.loads(kit.release_json)
    d["signatures"] = []
    return bundle(json.dumps(d).encode(), kit.files)


@case("arbitrary-bad-signature", "TUF-arbitrary", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    d = json.loads(kit.release_json)
    sig = d["signatures"][0]["sig"]
    d["signatures"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    return bundle(json.dumps(d).encode(), kit.files)


@case("arbitrary-edited-after-signing", "TUF-arbitrary", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    d = json.loads(kit.release_json)
    d["signed"]["airlock"]["flags"] = {"backdoor": True}
    return bundle(json.dumps(d).encode(), kit.files)


@case("arbitrary-forged-keyid", "TUF-arbitrary", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    # The rogue key signs but claims to be the release key.
    s = kit.signed()
    s["airlock"]["version"] = "evil"
    d = json.loads(sign_dict(s, [kit.rogue]))
    d["signatures"][0]["keyid"] = kit.release.public_key.keyid
    return bundle(json.dumps(d).encode(), kit.files)


@case("arbitrary-root-key-signs-release", "TUF-arbitrary", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: None, [kit.root])


@case("arbitrary-model-swapped", "TUF-arbitrary", "sha256 is")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    evil = bytes(b ^ 0xFF for b in data)  # same length, other bytes
    return bundle(kit.release_json, _swap_file(kit, path, evil))


@case("arbitrary-root-json-as-release", "TUF-arbitrary", "not of type 'targets'")
def _(kit: Kit) -> bytes:
    return bundle(kit.trust_path.read_bytes(), kit.files)


@case("arbitrary-rotated-root-rogue", "TUF-arbitrary", "old root's keys")
def _(kit: Kit) -> bytes:
    # A "rotation" to a root the attacker controls, signed only by the attacker.
    s = kit.trust_signed()
    s["version"] = 2
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.rogue_root], release_form=False))


@case("arbitrary-rotated-root-malformed-ring-signers", "TUF-arbitrary", "malformed ring signers")
def _(kit: Kit) -> bytes:
    # Not even signed: parsing it crashed the reader with AttributeError (exit 1).
    s = kit.trust_signed()
    s["version"] = 2
    s["x-airlock-delegations"] = {"keys": "everyone", "roles": 1}
    return bundle(kit.release_json, kit.files, root_json=json.dumps({"signed": s, "signatures": []}).encode())


@case("arbitrary-rotated-root-with-float", "TUF-arbitrary", "canonical JSON")
def _(kit: Kit) -> bytes:
    # Unsigned; a float makes the signed bytes uncomputable: an uncaught SerializationError.
    s = kit.trust_signed()
    s["version"] = 2
    s["roles"]["root"]["keyids"].append(0.5)
    return bundle(kit.release_json, kit.files, root_json=json.dumps({"signed": s, "signatures": []}).encode())


@case("arbitrary-rotated-root-ring-signer-without-rings", "TUF-wrong", "needs a list of ring names")
def _(kit: Kit) -> bytes:
    # Signed by the real root key, but a ring signer whose rings are a string.
    s = kit.trust_signed()
    s["version"] = 2
    s["x-airlock-delegations"]["roles"][0]["rings"] = "canary"
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.root], release_form=False))


# TUF: rollback --------------------------------------------------------------------


@case("rollback-older-sequence", "TUF-rollback", "older than sequence",
      device_seen=ACTIVE_SEQUENCE)
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(version=ACTIVE_SEQUENCE - 1))


@case("rollback-root-same-version-other-content", "TUF-rollback",
      "different trust root claims version")
def _(kit: Kit) -> bytes:
    s = kit.trust_signed()
    s["expires"] = _when(timedelta(days=3650))
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.root], release_form=False))


# TUF: fast-forward -----------------------------------------------------------------


@case("fastforward-rogue-huge-sequence", "TUF-fastforward", "signed by unknown key")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(version=2**63 - 1), [kit.rogue])


@case("fastforward-unrepresentable-sequence", "TUF-fastforward", "sequence")
def _(kit: Kit) -> bytes:
    # Even the real key must not push a device past any sequence it can ever see again.
    return _resigned(kit, lambda s: s.update(version=10**30))


@case("fastforward-zero-sequence", "TUF-fastforward", "version")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(version=0))


@case("fastforward-root-version-jump", "TUF-fastforward", "jumps from version 1 to 5")
def _(kit: Kit) -> bytes:
    s = kit.trust_signed()
    s["version"] = 5
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.root], release_form=False))


# TUF: indefinite freeze -------------------------------------------------------------


@case("freeze-expired-release", "TUF-freeze", "expired at")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(expires=_when(-timedelta(days=1))))


@case("freeze-expired-rotated-root", "TUF-freeze", "trust root expired")
def _(kit: Kit) -> bytes:
    s = kit.trust_signed()
    s["version"] = 2
    s["expires"] = _when(-timedelta(hours=1))
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.root], release_form=False))


@case("freeze-bad-expiry-format", "TUF-freeze", "not valid TUF metadata")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(expires="never"))


# TUF: endless data ------------------------------------------------------------------


@case("endless-member-longer-than-signed", "TUF-endless", "signed metadata says")
def _(kit: Kit) -> bytes:
    path, _data = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        if p == path:  # the header claims 1 GiB; the reader must not start reading it
            out += member(tarinfo(p, 1 << 30), d) + b"\xaa" * (1 << 16)
            return out
        out += regular(p, d)
    raise AssertionError


@case("endless-zeros", "TUF-endless", "bundle is empty")
def _(kit: Kit) -> bytes:
    return b"\0" * (4 << 20)


@case("endless-random-bytes", "TUF-endless", "not a bundle")
def _(kit: Kit) -> bytes:
    return hashlib.sha256(b"seed").digest() * (1 << 15)


@case("endless-trailing-members-after-listed", "TUF-endless", "not listed in the signed metadata")
def _(kit: Kit) -> bytes:
    junk = b"\xbb" * 4096
    return bundle(kit.release_json, [*kit.files, ("blobs/sha256/" + hashlib.sha256(junk).hexdigest(), junk)])


# TUF: extraneous dependencies -------------------------------------------------------


@case("extraneous-unlisted-blob", "TUF-extraneous", "not listed in the signed metadata")
def _(kit: Kit) -> bytes:
    extra = b"#!/bin/sh\nrm -rf /\n"
    files = list(kit.files)
    files.insert(2, ("blobs/sha256/" + hashlib.sha256(extra).hexdigest(), extra))
    return bundle(kit.release_json, files)


@case("extraneous-file-outside-layout", "TUF-extraneous", "outside the bundle layout")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, [*kit.files[:2], ("install.sh", b"echo pwned\n"), *kit.files[2:]])


@case("extraneous-model-blob-not-carried", "TUF-extraneous", "not in the bundle")
def _(kit: Kit) -> bytes:
    # Validly signed metadata naming a model blob the bundle neither carries nor expects.
    def mutate(s: dict[str, Any]) -> None:
        s["airlock"]["models"][0]["blob"] = "sha256:" + "ab" * 32
    return _resigned(kit, mutate)


@case("extraneous-image-blob-not-carried", "TUF-extraneous", "not in the bundle")
def _(kit: Kit) -> bytes:
    def mutate(s: dict[str, Any]) -> None:
        s["airlock"]["images"] = [{
            "ref": "registry.local/app:1", "manifest": "sha256:" + "cd" * 32,
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "blobs": ["sha256:" + "ef" * 32],
        }]
    return _resigned(kit, mutate)


@case("extraneous-index-names-missing-manifest", "TUF-extraneous", "index.json")
def _(kit: Kit) -> bytes:
    # index.json (validly signed) points at a manifest the bundle lacks.
    index = json.loads(dict(kit.files)["index.json"])
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": "sha256:" + "12" * 32, "size": 999})
    data = json.dumps(index).encode()

    def mutate(s: dict[str, Any]) -> None:
        set_target(s, "index.json", data)
    return _resigned(kit, mutate, files=_swap_file(kit, "index.json", data))


@case("oci-manifest-layer-size-lies", "TUF-extraneous", "the bundle carries")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("manifest")
    m = json.loads(data)
    m["layers"][0]["size"] += 1000
    s, files = kit.rewrite_blob(path, json.dumps(m).encode())
    return bundle(sign_dict(s, [kit.release]), files)


@case("oci-manifest-not-json", "TUF-extraneous", "is not valid JSON")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("manifest")
    s, files = kit.rewrite_blob(path, b"\x00" + data)
    return bundle(sign_dict(s, [kit.release]), files)


@case("oci-index-not-json", "TUF-extraneous", "index.json is not valid JSON")
def _(kit: Kit) -> bytes:
    data = b'{"manifests": [' * 5000

    def mutate(s: dict[str, Any]) -> None:
        set_target(s, "index.json", data)
    return _resigned(kit, mutate, files=_swap_file(kit, "index.json", data))


@case("oci-blob-before-index", "TUF-extraneous", "comes before index.json")
def _(kit: Kit) -> bytes:
    # Same signed metadata, members reordered: a manifest could pass before its index.
    index = [f for f in kit.files if f[0] == "index.json"]
    rest = [f for f in kit.files if f[0] != "index.json"]
    return bundle(kit.release_json, [*rest, *index])


# TUF: mix-and-match -----------------------------------------------------------------


@case("mixmatch-new-metadata-old-blobs", "TUF-mixmatch", "index.json")
def _(kit: Kit) -> bytes:
    return bundle(kit.other_release_json, kit.files)


@case("mixmatch-old-metadata-new-index", "TUF-mixmatch", "index.json")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, _swap_file(kit, "index.json", dict(kit.other_files)["index.json"]))


@case("mixmatch-signatures-of-other-release", "TUF-mixmatch", "0 of 1 signatures")
def _(kit: Kit) -> bytes:
    d = json.loads(kit.release_json)
    d["signatures"] = json.loads(kit.other_release_json)["signatures"]
    return bundle(json.dumps(d).encode(), kit.files)


@case("mixmatch-root-of-other-organisation", "TUF-mixmatch", "old root's keys")
def _(kit: Kit) -> bytes:
    from keys.trust import create_root

    other = create_root([kit.rogue_root], [kit.rogue.public_key], version=2)
    return bundle(kit.release_json, kit.files, root_json=other.to_bytes())


# TUF: wrong software ----------------------------------------------------------------


@case("wrong-ring-for-device", "TUF-wrong", "this device is in ring 'canary'", ring="canary")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(rings=["prod"]))


@case("wrong-canary-signer-targets-prod", "TUF-wrong", "may deploy only to rings canary")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(rings=["prod"]), list(kit.canary))


@case("wrong-canary-signer-targets-all", "TUF-wrong", "all rings")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: None, list(kit.canary))


@case("wrong-model-file-name-traversal", "TUF-wrong", "not a plain name")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0].update(file_name="../../bin/sh"))


@case("wrong-release-name-traversal", "TUF-wrong", "not a plain name")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(name="../../etc"))


@case("wrong-blob-listed-under-other-digest", "TUF-wrong", "under another digest")
def _(kit: Kit) -> bytes:
    path, _data = kit.blob("model")

    def mutate(s: dict[str, Any]) -> None:
        s["targets"]["blobs/sha256/" + "00" * 32] = s["targets"].pop(path)
    return _resigned(kit, mutate)


# TUF: key compromise below threshold ------------------------------------------------


@case("threshold-one-of-two-canary", "TUF-threshold", "1 of 2 signatures")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(rings=["canary"]), [kit.canary[0]])


@case("threshold-same-signature-twice", "TUF-threshold", "signature")
def _(kit: Kit) -> bytes:
    s = kit.signed()
    s["airlock"]["rings"] = ["canary"]
    d = json.loads(sign_dict(s, [kit.canary[0]]))
    d["signatures"] = d["signatures"] * 2  # one key counted twice?
    return bundle(json.dumps(d).encode(), kit.files)


@case("threshold-rotated-root-needs-two", "TUF-threshold", "its own keys")
def _(kit: Kit) -> bytes:
    # The new root asks for two root signatures; only the stolen old key signs.
    s = kit.trust_signed()
    s["version"] = 2
    rogue = kit.rogue_root.public_key
    s["keys"][rogue.keyid] = rogue.to_dict()
    s["roles"]["root"]["keyids"].append(rogue.keyid)
    s["roles"]["root"]["threshold"] = 2
    return bundle(kit.release_json, kit.files,
                  root_json=sign_dict(s, [kit.root], release_form=False))
