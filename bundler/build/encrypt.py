"""``airlock build --encrypt-to``: the layout's layers encrypted to named recipients.

Run on the assembled layout after the host's model check and before the
release is made: every layer of every image and model manifest (agent kits
stay clear, a device needs them to update) is encrypted as ocicrypt does
(``airlock.format.ocicrypt``) into ``work``, its descriptor becomes
``…+encrypted`` with the ``enc.keys.jwe`` and ``enc.pubopts`` annotations,
and ``index.json`` names the encrypted manifest, which is what
``skopeo copy --decryption-key`` reads. The clear manifests stay in the
layout (small, unreferenced by the index) so a device stores exactly what a
clear release gives it; the clear layers leave it. Configs stay clear, as
ocicrypt leaves them::

    encryption = encrypt_layout(contents, recipients, work_dir, progress)
    release.encryption = encryption          # signed: ciphertext and plaintext digests
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

from securesystemslib.signer import Key

from airlock.console import Progress, no_progress
from airlock.format.oci import MANIFEST_TYPES, OCI_MANIFEST, Descriptor, blob_path
from airlock.format.ocicrypt import encrypt_file, encrypted_type
from airlock.format.writer import SourceFile
from bundler.build.agentkit import KIT_ARTIFACT_TYPE
from bundler.build.artifacts import LayoutBuilder
from keys.encryption_keys import Recipient
from keys.release import EncryptedBlob, Encryption

__all__ = ["encrypt_layout", "recipient_of_file"]

# Docker schema 2 types and their OCI names: an encrypted manifest is OCI (as skopeo makes it).
_OCI_NAMES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.container.image.v1+json": "application/vnd.oci.image.config.v1+json",
}


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def encrypt_layout(contents: LayoutBuilder, recipients: Sequence[Recipient], work: Path,
                   progress: Progress = no_progress) -> Encryption:
    """Encrypt every image and model layer of ``contents`` in place (ciphertext under ``work``)."""
    pems = [r.public_pem for r in recipients]
    sealed: dict[str, EncryptedBlob] = {}  # plaintext digest -> its encrypted blob
    layer_types: dict[str, Descriptor] = {}
    todo = [d for d in contents.manifests
            if d.media_type in MANIFEST_TYPES and d.artifact_type != KIT_ARTIFACT_TYPE]
    total = sum(int(layer.get("size", 0)) for d in todo for layer in _manifest(contents, d)["layers"])
    done = 0
    for desc in todo:
        for layer in _manifest(contents, desc)["layers"]:
            digest = layer["digest"]
            if digest in sealed:
                continue
            source = contents.blobs[digest]
            out = work / f"{digest[7:]}.enc"
            src = contents.paths.get(digest)
            if src is None:  # held in memory (a small golden file): written out first
                src = work / f"{digest[7:]}.plain"
                with source.open() as fin:
                    src.write_bytes(fin.read())
            s = encrypt_file(src, out, pems)
            sealed[digest] = EncryptedBlob(s.digest, s.plain_digest, s.jwe, s.hmac)
            layer_types[digest] = Descriptor(layer["mediaType"], s.digest, s.size, s.annotations())
            contents.blobs[s.digest] = SourceFile(blob_path(s.digest), s.size, s.digest[7:],
                                                  partial(_open_binary, out))
            done += s.size
            progress("encrypting", done, total)
    for i, desc in enumerate(contents.manifests):
        if desc in todo:
            contents.manifests[i] = _encrypted_manifest(contents, desc, layer_types)
    for digest in sealed:  # no clear layer is carried
        del contents.blobs[digest]
    names = tuple((r.name, r.kid) for r in recipients)
    return Encryption(names, tuple(sealed.values()))


def _manifest(contents: LayoutBuilder, desc: Descriptor) -> dict[str, Any]:
    with contents.blobs[desc.digest].open() as f:
        doc: dict[str, Any] = json.loads(f.read())
    return doc


def _encrypted_manifest(contents: LayoutBuilder, desc: Descriptor,
                        layers: dict[str, Descriptor]) -> Descriptor:
    doc = _manifest(contents, desc)
    doc["mediaType"] = OCI_MANIFEST
    config = doc["config"]
    config["mediaType"] = _OCI_NAMES.get(config["mediaType"], config["mediaType"])
    new_layers = []
    for layer in doc["layers"]:
        enc = layers[layer["digest"]]
        d = {k: v for k, v in layer.items() if k not in ("mediaType", "digest", "size")}
        d["mediaType"] = encrypted_type(_OCI_NAMES.get(enc.media_type, enc.media_type))
        d["digest"], d["size"] = enc.digest, enc.size
        d["annotations"] = {**layer.get("annotations", {}), **enc.annotations}
        new_layers.append(d)
    doc["layers"] = new_layers
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    new = contents.add_bytes(OCI_MANIFEST, data, annotations=dict(desc.annotations),
                             artifact_type=desc.artifact_type, platform=desc.platform)
    return new


def recipient_of_file(path: Path, data: bytes, device_keys: Sequence[Key] = ()) -> Recipient:
    """A recipient named on the command line: a PEM public key, or a signed device inventory
    (checked against ``device_keys`` when given, as ``--delta-from`` inventories are)."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return Recipient.from_bytes(data, path.name)
    from airlock.errors import UsageError
    from bundler.sneakernet.device_inventories import read_inventory

    try:
        envelope = json.loads(data)
    except ValueError:
        envelope = None
    if not (isinstance(envelope, dict) and "payloadType" in envelope):
        # An Airlock device.pub (Ed25519) lands here: ocicrypt's JWE cannot wrap to it.
        raise UsageError(f"--encrypt-to {path} is neither a PEM public key (EC or RSA) nor a "
                         "device's signed inventory (airlock-agent inventory -o)")
    inv = read_inventory(data, device_keys, path=str(path))
    pem = inv.body.get("encryption_key")
    if not isinstance(pem, str):
        raise UsageError(f"inventory {path} of {inv.device_id} carries no encryption key: the "
                         "device makes one on its next start (any airlock-agent command that "
                         "changes it); write its inventory again")
    return Recipient.from_bytes(pem.encode(), inv.device_id)
