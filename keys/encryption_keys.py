"""A device's encryption key: EC P-256, apart from its Ed25519 signing key.

ocicrypt's JWE wraps layer keys to EC (``ECDH-ES+A256KW``) or RSA keys, not
Ed25519, so a device holds a second pair for what is encrypted to it. Its
public half travels in the device's signed inventory, so the inventories a
delta is built from can also be the recipient list::

    private_pem, public_pem = generate_pair()
    recipient = Recipient.from_bytes(open("cam-7.pub", "rb").read(), "cam-7.pub")
    recipient.kid                  # RFC 7638 thumbprint: how a release names it
"""

from __future__ import annotations

from dataclasses import dataclass

from airlock.errors import UsageError

__all__ = ["Recipient", "generate_pair"]


def generate_pair() -> tuple[bytes, bytes]:
    """A fresh P-256 key: (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@dataclass(frozen=True)
class Recipient:
    """A public key a release is encrypted to, with the name ``inspect`` shows."""

    name: str
    public_pem: bytes
    kid: str

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> Recipient:
        """A PEM public key (EC P-256/384/521 or RSA), else a usage error naming ``name``."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        from airlock.format.ocicrypt import key_id

        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise UsageError(f"{name} is not a PEM public key nor a device inventory with an "
                             "encryption key") from None
        if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
            raise UsageError(f"{name} is neither an EC nor an RSA public key: ocicrypt's JWE "
                             "wraps layer keys only to those")
        pem = key.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(name, pem, key_id(pem))
