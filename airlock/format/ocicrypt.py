"""OCI layer encryption as containers/ocicrypt does it, so skopeo and containerd can decrypt.

Each blob gets a fresh 256-bit key and 128-bit nonce; its bytes are
encrypted with AES-256-CTR and an HMAC-SHA256 (same key) is taken over the
ciphertext. The key, nonce and plaintext digest (ocicrypt's "private
options") are wrapped per recipient as one JWE in General JSON serialization
(``ECDH-ES+A256KW`` for EC keys, ``RSA-OAEP`` for RSA, content ``A256GCM``)
and carried base64 in the layer's ``org.opencontainers.image.enc.keys.jwe``
annotation; the HMAC travels in ``org.opencontainers.image.enc.pubopts``.
The layer's media type gains ``+encrypted``. jwcrypto and cryptography do
every primitive::

    sealed = encrypt_file(Path("model.onnx"), Path("/tmp/ct"), [device_pub_pem])
    sealed.digest, sealed.plain_digest, sealed.annotations()   # the layer descriptor's parts
    opener = BlobOpener.unwrap(sealed.jwe, sealed.hmac, device_private_pem)  # NotRecipient
    stream = opener.stream()
    plain = stream.update(ciphertext_chunk)  # ... then stream.finish() checks the HMAC

:func:`seal` and :func:`unseal` wrap a whole small document the same way (a
device's report to headquarters). jwcrypto and cryptography are imported here only: a release in clear never
loads them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.errors import DigestError, RejectedError
from airlock.limits import CHUNK

__all__ = [
    "ANNOTATION_KEYS_JWE",
    "ANNOTATION_PUBOPTS",
    "CIPHER",
    "BlobOpener",
    "DecryptStream",
    "NotRecipientError",
    "Sealed",
    "encrypt_file",
    "encrypted_type",
    "is_sealed",
    "key_id",
    "recipient_ids",
    "seal",
    "unseal",
]

ANNOTATION_KEYS_JWE = "org.opencontainers.image.enc.keys.jwe"
ANNOTATION_PUBOPTS = "org.opencontainers.image.enc.pubopts"
CIPHER = "AES_256_CTR_HMAC_SHA256"
_CONTENT_ENC = "A256GCM"


class NotRecipientError(RejectedError):
    """The blob's key is wrapped for others only: this key cannot open it. Exit 3."""


def encrypted_type(media_type: str) -> str:
    """``application/vnd.oci.image.layer.v1.tar+gzip`` -> ``…+gzip+encrypted`` (ocicrypt's)."""
    return media_type if media_type.endswith("+encrypted") else media_type + "+encrypted"


def key_id(public_pem: bytes) -> str:
    """The RFC 7638 thumbprint of a public key: how a release names its recipients."""
    from jwcrypto import jwk

    return str(jwk.JWK.from_pem(public_pem).thumbprint())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Sealed:
    """One blob encrypted: what its descriptor and the signed release say about it."""

    digest: str  # sha256:… of the ciphertext (what the bundle carries and the release signs)
    size: int  # ciphertext bytes (CTR: the same as the plaintext)
    plain_digest: str
    plain_size: int
    hmac: str  # base64, as ocicrypt's pubopts carries it
    jwe: str  # the keys.jwe annotation: base64 of the JWE JSON

    def pubopts(self) -> str:
        """The pubopts annotation: base64 of ``{"cipher", "hmac", "cipheroptions"}``."""
        return pubopts(self.hmac)

    def annotations(self) -> dict[str, str]:
        return {ANNOTATION_KEYS_JWE: self.jwe, ANNOTATION_PUBOPTS: self.pubopts()}


def pubopts(hmac_b64: str) -> str:
    doc = {"cipher": CIPHER, "hmac": hmac_b64, "cipheroptions": {}}
    return _b64(json.dumps(doc, separators=(",", ":")).encode())


def _wrap(private_opts: bytes, recipients: Sequence[bytes]) -> str:
    """One JWE for every recipient (General JSON), base64 as the annotation carries it."""
    from jwcrypto import jwe, jwk

    token = jwe.JWE(private_opts, protected=json.dumps({"enc": _CONTENT_ENC}))
    for pem in recipients:
        key = jwk.JWK.from_pem(pem)
        alg = "ECDH-ES+A256KW" if key.get("kty") == "EC" else "RSA-OAEP"
        token.add_recipient(key, header=json.dumps({"alg": alg, "kid": key.thumbprint()}))
    return _b64(token.serialize().encode())


def seal(payload: bytes, recipients: Sequence[bytes]) -> bytes:
    """``payload`` (a signed report) as one JWE JSON document for ``recipients`` (PEM)."""
    return base64.b64decode(_wrap(payload, recipients))


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` is a JWE JSON document (as :func:`seal` writes), not a signed one."""
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, dict) and "ciphertext" in doc and "protected" in doc


def unseal(data: bytes, private_pems: Sequence[bytes]) -> bytes:
    """The payload :func:`seal` wrapped, opened by one of ``private_pems``; else NotRecipientError."""
    from jwcrypto import jwe, jwk
    from jwcrypto.common import JWException

    for pem in private_pems:
        token = jwe.JWE()
        try:
            token.deserialize(data.decode(), jwk.JWK.from_pem(pem))
        except (JWException, ValueError, TypeError):
            continue
        return bytes(token.payload)
    raise NotRecipientError("it is encrypted to other keys than those given")


def encrypt_file(src: Path, dst: Path, recipients: Sequence[bytes],
                 chunk: int = CHUNK) -> Sealed:
    """Encrypt ``src`` into ``dst`` (created new) for ``recipients`` (public keys, PEM)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    symkey, nonce = os.urandom(32), os.urandom(16)
    enc = Cipher(algorithms.AES(symkey), modes.CTR(nonce)).encryptor()
    mac = hmac.new(symkey, digestmod=hashlib.sha256)
    plain, cipher = hashlib.sha256(), hashlib.sha256()
    size = 0
    with src.open("rb") as fin, open(dst, "xb") as fout:
        while block := fin.read(chunk):
            plain.update(block)
            ct = enc.update(block)
            mac.update(ct)
            cipher.update(ct)
            fout.write(ct)
            size += len(block)
        fout.write(enc.finalize())
    plain_digest = "sha256:" + plain.hexdigest()
    private = {"symkey": _b64(symkey), "digest": plain_digest,
               "cipheroptions": {"nonce": _b64(nonce)}}
    jwe_b64 = _wrap(json.dumps(private, separators=(",", ":")).encode(), recipients)
    return Sealed("sha256:" + cipher.hexdigest(), size, plain_digest, size,
                  _b64(mac.digest()), jwe_b64)


def recipient_ids(jwe_b64: str) -> list[str]:
    """The ``kid`` of every recipient a keys.jwe annotation names (no key needed)."""
    doc = json.loads(base64.b64decode(jwe_b64))
    entries = doc.get("recipients") or [doc]
    return [str((r.get("header") or {}).get("kid", "?")) for r in entries]


@dataclass(frozen=True)
class BlobOpener:
    """The unwrapped key of one blob: opens a decrypting stream."""

    symkey: bytes
    nonce: bytes
    plain_digest: str
    hmac: bytes

    @classmethod
    def unwrap(cls, jwe_b64: str, hmac_b64: str, private_pem: bytes) -> BlobOpener:
        """Unwrap with ``private_pem``; :class:`NotRecipientError` when it is not one of them."""
        from jwcrypto import jwe, jwk
        from jwcrypto.common import JWException

        key = jwk.JWK.from_pem(private_pem)
        token = jwe.JWE()
        try:
            token.deserialize(base64.b64decode(jwe_b64).decode(), key)
            opts: dict[str, Any] = json.loads(token.payload)
            symkey = base64.b64decode(opts["symkey"])
            nonce = base64.b64decode(opts["cipheroptions"]["nonce"])
        except (JWException, ValueError, KeyError, TypeError):
            raise NotRecipientError("its layer keys are wrapped for other keys only") from None
        if len(symkey) != 32 or len(nonce) != 16:
            raise NotRecipientError("its wrapped layer key is not an AES-256-CTR key")
        return cls(symkey, nonce, str(opts.get("digest", "")), base64.b64decode(hmac_b64))

    def stream(self) -> DecryptStream:
        return DecryptStream(self)


class DecryptStream:
    """Decrypts ciphertext chunks in order; :meth:`finish` checks the HMAC and plaintext digest.

    The caller's thread decrypts (it needs the plaintext to write); the HMAC
    of the ciphertext and the plaintext's digest are taken on a second
    thread, so the pass spreads over two cores (hashlib and OpenSSL's HMAC
    release the GIL). :meth:`close` ends that thread when the blob failed.
    """

    def __init__(self, opener: BlobOpener) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self._opener = opener
        self._dec = Cipher(algorithms.AES(opener.symkey), modes.CTR(opener.nonce)).decryptor()
        self._mac = hmac.new(opener.symkey, digestmod=hashlib.sha256)
        self._plain = hashlib.sha256()
        # Bounded: the decrypting thread waits rather than queue a whole layer in memory.
        self._queue: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._digest, name="airlock-hmac", daemon=True)
        self._thread.start()

    def _digest(self) -> None:
        while (item := self._queue.get()) is not None:
            self._mac.update(item[0])
            self._plain.update(item[1])

    def update(self, ciphertext: bytes | memoryview) -> bytes:
        held = bytes(ciphertext)  # the reader reuses its buffer once this returns
        out = self._dec.update(held)
        self._queue.put((held, out))
        return out

    def close(self) -> None:
        """End the digest thread (idempotent); the verdict is :meth:`finish`'s."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def finish(self) -> None:
        """Raise DigestError unless the HMAC and the plaintext digest are the signed ones."""
        self._dec.finalize()
        self.close()
        if not hmac.compare_digest(self._mac.digest(), self._opener.hmac):
            raise DigestError("the decrypted blob fails its HMAC")
        if "sha256:" + self._plain.hexdigest() != self._opener.plain_digest:
            raise DigestError("the decrypted blob is not its signed plaintext digest")
