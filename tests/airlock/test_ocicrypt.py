"""ocicrypt's layer scheme (airlock/format/ocicrypt.py): what a device relies on when it opens
a blob, beside the signed digest that is checked first: the key opens only for a recipient,
the HMAC and the plaintext digest are checked at the end, and the annotations are ocicrypt's."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from airlock.errors import DigestError
from airlock.format.ocicrypt import (
    ANNOTATION_KEYS_JWE,
    ANNOTATION_PUBOPTS,
    BlobOpener,
    NotRecipientError,
    encrypt_file,
    recipient_ids,
)
from keys.encryption_keys import Recipient, generate_pair


def _decrypt(opener: BlobOpener, data: bytes) -> bytes:
    stream = opener.stream()
    out = b"".join(stream.update(data[i:i + 65536]) for i in range(0, len(data), 65536))
    stream.finish()
    return out


def test_two_recipients_open_a_blob_a_third_cannot(tmp_path: Path) -> None:
    (a_key, a_pub), (b_key, b_pub), (c_key, _) = generate_pair(), generate_pair(), generate_pair()
    plain = os.urandom(300_000)
    (tmp_path / "p").write_bytes(plain)
    sealed = encrypt_file(tmp_path / "p", tmp_path / "c", [a_pub, b_pub])
    cipher = (tmp_path / "c").read_bytes()
    assert len(cipher) == len(plain) and plain[:4096] not in cipher
    for key in (a_key, b_key):
        assert _decrypt(BlobOpener.unwrap(sealed.jwe, sealed.hmac, key), cipher) == plain
    with pytest.raises(NotRecipientError):
        BlobOpener.unwrap(sealed.jwe, sealed.hmac, c_key)
    kids = [Recipient.from_bytes(p, "x").kid for p in (a_pub, b_pub)]
    assert recipient_ids(sealed.jwe) == kids
    pubopts = json.loads(base64.b64decode(sealed.annotations()[ANNOTATION_PUBOPTS]))
    assert pubopts == {"cipher": "AES_256_CTR_HMAC_SHA256", "hmac": sealed.hmac,
                       "cipheroptions": {}}
    jwe = json.loads(base64.b64decode(sealed.annotations()[ANNOTATION_KEYS_JWE]))
    assert {r["header"]["alg"] for r in jwe["recipients"]} == {"ECDH-ES+A256KW"}


def test_an_altered_ciphertext_fails_its_hmac_at_the_end(tmp_path: Path) -> None:
    key, pub = generate_pair()
    (tmp_path / "p").write_bytes(os.urandom(100_000))
    sealed = encrypt_file(tmp_path / "p", tmp_path / "c", [pub])
    cipher = bytearray((tmp_path / "c").read_bytes())
    cipher[5000] ^= 1
    with pytest.raises(DigestError, match="HMAC"):
        _decrypt(BlobOpener.unwrap(sealed.jwe, sealed.hmac, key), bytes(cipher))


def test_an_rsa_site_key_is_a_recipient_too(tmp_path: Path) -> None:
    """The public half of an HSM-held or site RSA key: wrapped with RSA-OAEP, as ocicrypt does."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    plain = os.urandom(70_000)
    (tmp_path / "p").write_bytes(plain)
    sealed = encrypt_file(tmp_path / "p", tmp_path / "c",
                          [Recipient.from_bytes(public, "site.pub").public_pem])
    jwe = json.loads(base64.b64decode(sealed.jwe))
    assert jwe["header"]["alg"] == "RSA-OAEP"  # one recipient: the flattened form
    opener = BlobOpener.unwrap(sealed.jwe, sealed.hmac, private)
    assert _decrypt(opener, (tmp_path / "c").read_bytes()) == plain
