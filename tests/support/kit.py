"""The good bundle every hostile test starts from, taken apart, and the keys that sign variants.

    kit = Kit.create(workdir, root_key=Path("root.key"), release_key=Path("release.key"))
    kit.good                     # bytes of a real signed bundle (sequence GOOD_SEQUENCE)
    kit.release_json, kit.files  # its signed metadata, and its OCI layout files in archive order
    s = kit.signed()             # a copy of the signed part, to mutate and re-sign
    path, data = kit.blob("model")
    s, files = kit.rewrite_blob(path, other_model)   # as a key holder would: references fixed

Besides the release and root keys it is given, the kit generates a canary
ring signer (2-of-2), a rogue key and another organisation's root key, and
writes the trust root a device holds (``kit.trust_path``). It also builds a
second valid release (``other_*``) for mix-and-match, and an older one
(``active``, sequence ACTIVE_SEQUENCE) for the release a device runs.
tests/support/tarsurgery.py puts the pieces back together, whole or not.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer

GOOD_SEQUENCE = 5
# A device under test runs this release (same name, lower sequence), so every
# case reaches the agent's full install path instead of "already active".
ACTIVE_SEQUENCE = GOOD_SEQUENCE - 1


@dataclass
class Kit:
    """A real good bundle, taken apart, and every key the corpus signs with."""

    trust_path: Path  # the trust root a device holds (release key + canary ring signer 2-of-2)
    release: Signer  # the real release key: signs for every ring
    root: Signer  # the real root key
    canary: tuple[Signer, Signer]  # ring signer 'canary', threshold 2
    rogue: Signer  # a key nobody trusts
    rogue_root: Signer  # root key of another organisation
    good: bytes  # the good bundle (sequence GOOD_SEQUENCE)
    release_json: bytes
    files: list[tuple[str, bytes]]  # OCI layout files in archive order
    other_release_json: bytes  # a valid release of another build (sequence GOOD_SEQUENCE + 1)
    other_files: list[tuple[str, bytes]]
    active: bytes  # a good bundle of sequence ACTIVE_SEQUENCE, for the device's active release
    _trust_bytes: bytes = field(default=b"", repr=False)

    @classmethod
    def create(cls, workdir: Path, *, root_key: Path, release_key: Path) -> Kit:
        """Build three real bundles (good, other, active) with the given keys; generate the rest."""
        from keys.keyfile import generate_keypair, load_public_key, load_signer
        from keys.trust import RingSigner, create_root
        from tests.support.spec import build, write_spec

        workdir.mkdir(parents=True, exist_ok=True)
        extra = {}
        for name in ("canary1", "canary2", "rogue", "rogue-root"):
            priv, pub = generate_keypair(name, workdir, force=True)
            extra[name] = (load_signer(priv), load_public_key(pub))
        root = load_signer(root_key)
        release = load_signer(release_key)
        md = create_root(
            [root], [release.public_key],
            ring_signers=[RingSigner("canary", (extra["canary1"][1], extra["canary2"][1]),
                                     ("canary",), threshold=2)],
        )
        trust_path = workdir / "trust.json"
        trust_path.write_bytes(md.to_bytes())

        def release_bundle(sequence: int, scale: float) -> bytes:
            spec = write_spec(workdir, name="vision", version=f"1.{sequence}", sequence=sequence,
                              scale=scale, runs=3)
            return build(spec, workdir / f"vision-{sequence}.airlock", [release_key]).read_bytes()

        good = release_bundle(GOOD_SEQUENCE, 2.0)
        other = release_bundle(GOOD_SEQUENCE + 1, 3.0)
        active = release_bundle(ACTIVE_SEQUENCE, 1.5)
        release_json, files = _split(good)
        other_release_json, other_files = _split(other)
        return cls(
            trust_path=trust_path, release=release, root=root,
            canary=(extra["canary1"][0], extra["canary2"][0]), rogue=extra["rogue"][0],
            rogue_root=extra["rogue-root"][0], good=good, release_json=release_json,
            files=files, other_release_json=other_release_json, other_files=other_files,
            active=active, _trust_bytes=trust_path.read_bytes(),
        )

    # -- helpers the cases use ----------------------------------------------
    def signed(self) -> dict[str, Any]:
        """A deep copy of the good release's signed part, to mutate."""
        return copy.deepcopy(json.loads(self.release_json)["signed"])

    def trust_signed(self) -> dict[str, Any]:
        return copy.deepcopy(json.loads(self._trust_bytes)["signed"])

    def blob(self, kind: str) -> tuple[str, bytes]:
        """A file of the good bundle: 'model', 'manifest', 'inputs', 'outputs', 'index' or
        'smallest'."""
        rel = self.signed()["airlock"]
        if kind == "index":
            return next(f for f in self.files if f[0] == "index.json")
        model = rel["models"][0]
        digest = {"model": model["blob"], "manifest": model["manifest"],
                  "inputs": model["health"]["inputs"],
                  "outputs": model["health"]["outputs"]}.get(kind)
        if digest is not None:
            return next(f for f in self.files if f[0] == "blobs/sha256/" + digest[7:])
        return next(f for f in self.files if f[0].startswith("blobs/"))


    def rewrite_blob(self, path: str, new: bytes) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
        """The signed part and files with blob ``path`` replaced by ``new`` under its own digest.

        Every reference is fixed, as a key holder would: the signed list and
        the model entry (digests, size), and any OCI document naming the blob
        (its manifest, then index.json), rewritten in turn. Sign the result
        with ``tarsurgery.sign_dict`` and join it with ``tarsurgery.bundle``.
        """
        return _rewrite_blob(self.signed(), list(self.files), path, new)


def _rewrite_blob(s: dict[str, Any], files: list[tuple[str, bytes]], path: str,
                  new: bytes) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    from tests.support.tarsurgery import set_target

    old, new_hex = "sha256:" + path[len("blobs/sha256/"):], hashlib.sha256(new).hexdigest()
    s = json.loads(json.dumps(s).replace(old[7:], new_hex))
    for m in s["airlock"]["models"]:
        if m["blob"] == "sha256:" + new_hex:
            m["size"] = len(new)
    new_path = "blobs/sha256/" + new_hex
    set_target(s, new_path, new)
    files = [(new_path, new) if p == path else (p, d) for p, d in files]
    while True:
        found = next(((p, doc) for p, d in files
                      if (doc := _naming(d, old, "sha256:" + new_hex, len(new))) is not None), None)
        if found is None:
            return s, files
        p, doc = found
        fixed = json.dumps(doc).encode()
        if p.startswith("blobs/"):
            s, files = _rewrite_blob(s, files, p, fixed)
        else:
            files = [(q, fixed if q == p else d) for q, d in files]
            set_target(s, p, fixed)


def _naming(data: bytes, old: str, new: str, size: int) -> Any:
    """``data`` as JSON with every descriptor of digest ``old`` pointed at ``new``; None if none."""
    if not data.startswith(b"{"):
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    hits = 0

    def walk(v: Any) -> None:
        nonlocal hits
        if isinstance(v, dict):
            if v.get("digest") == old:
                v["digest"], v["size"] = new, size
                hits += 1
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(doc)
    return doc if hits else None


def _split(bundle: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    release_json = b""
    files: list[tuple[str, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:") as tar:
        for m in tar:
            f = tar.extractfile(m)
            assert f is not None
            data = f.read()
            if m.name == "airlock/release.json":
                release_json = data.rstrip(b" \n")  # the JSON, without its slot's padding
            else:
                files.append((m.name, data))
    return release_json, files
