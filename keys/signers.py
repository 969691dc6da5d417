"""Signers from what a user names: a key file, a recorded public key, or a private-key URI.

Every ``--key`` of ``airlock`` takes one of:

* a private key file, as ``airlock keys generate`` writes it (``keys/release.key``);
* a ``.pub`` file that ``airlock keys import-public`` recorded for a key held
  elsewhere (``keys/hsm-release.pub``): it names its private key's URI;
* a securesystemslib private-key URI: ``hsm:2?label=airlock`` (PKCS#11, the
  module named by ``$PYKCS11LIB``; ECDSA P-256/P-384), ``envvar:VAR`` (a PEM
  private key in ``$VAR``, for CI), ``awskms:KEY-ID``, ``gcpkms:projects/…``,
  ``azurekms://VAULT.vault.azure.net/keys/KEY/VERSION``.

::

    secrets = Secrets(passphrase=None, pin=lambda: os.environ["HSM_PIN"])
    signer = open_signer("hsm:2?label=airlock", secrets)      # the token signs
    signer = open_signer("keys/release.key", secrets)          # a key file, as before
    key = import_public("hsm:2?label=airlock", secrets)       # for 'airlock keys init'

Airlock writes no private key material for a signer that is not a file: the
token or the KMS signs, and the ``envvar:`` key lives in this process's
memory only. securesystemslib does the work through its public API
(``Signer.from_priv_key_uri``, ``HSMSigner.import_``, the KMS signers'
``import_``); ``envvar:`` is registered here in ``SIGNER_FOR_URI_SCHEME``,
the extension point it documents. Secrets (an HSM's PIN, an encrypted key's
passphrase) are asked for through :class:`Secrets`, which the command line
fills from ``--pin-env`` / ``--passphrase-env`` or a prompt.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib import parse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.exceptions import (
    UnsupportedLibraryError,
    UnverifiedSignatureError,
    VerificationError,
)
from securesystemslib.signer import (
    SIGNER_FOR_URI_SCHEME,
    CryptoSigner,
    Key,
    SecretsHandler,
    Signature,
    Signer,
    SSlibKey,
)

from airlock.errors import UsageError
from keys.keyfile import load_public_key, load_public_record, load_signer

__all__ = [
    "URI_SCHEMES",
    "EnvVarSigner",
    "Secrets",
    "import_public",
    "is_key_uri",
    "key_files",
    "open_public_key",
    "open_signer",
    "sign_checked",
]

#: Private-key URI schemes ``--key`` accepts, and the extra that brings each one's library.
URI_SCHEMES: dict[str, str] = {
    "hsm": "'airlock-edge[hsm]' (python-pkcs11)",
    "envvar": "airlock-edge (cryptography)",
    "awskms": "securesystemslib[awskms]",
    "gcpkms": "securesystemslib[gcpkms]",
    "azurekms": "securesystemslib[azurekms]",
}

# Libraries whose own exceptions a token or a KMS raises (a wrong PIN, no network).
_SERVICE_MODULES = frozenset({"pkcs11", "botocore", "boto3", "google", "azure"})


def is_key_uri(text: str) -> bool:
    """Whether ``text`` names a private key by URI rather than by file."""
    scheme, sep, _ = text.partition(":")
    return bool(sep) and scheme in URI_SCHEMES


@dataclass
class Secrets:
    """Answers a signer's request for a secret: securesystemslib's ``SecretsHandler``.

    ``pin`` is called only when a token asks for its PIN, so a file key never
    prompts for one.
    """

    passphrase: bytes | None = None
    pin: Callable[[], str] | None = None

    def __call__(self, name: str) -> str:
        if name == "pin":
            if self.pin is None:
                raise UsageError("the HSM asks for its PIN: pass --pin-env VAR, or run on a "
                                 "terminal to be asked")
            return self.pin()
        if self.passphrase is None:
            raise UsageError(f"the key asks for its {name}: pass --passphrase-env VAR")
        return self.passphrase.decode()


@contextlib.contextmanager
def _service_errors(uri: str) -> Iterator[None]:
    """A token's or a KMS's failure as one line (exit 2) naming the URI."""
    scheme = uri.partition(":")[0]
    try:
        yield
    except UsageError:
        raise
    except UnsupportedLibraryError as e:
        raise UsageError(f"{uri}: {e}; install {URI_SCHEMES.get(scheme, 'its library')}") from None
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise UsageError(f"{uri}: {e or type(e).__name__}") from None
    except Exception as e:
        if type(e).__module__.partition(".")[0] not in _SERVICE_MODULES:
            raise
        hint = " (wrong PIN?)" if "Pin" in type(e).__name__ else ""
        raise UsageError(f"{uri}: {type(e).__name__} {e}".rstrip() + hint) from None


def _env_private_key(var: str, secrets: SecretsHandler | None) -> Ed25519PrivateKey | EllipticCurvePrivateKey:
    value = os.environ.get(var)
    if not value:
        raise UsageError(f"environment variable {var} holds no private key (envvar:{var})")
    data = value.encode()
    if not data.lstrip().startswith(b"-----BEGIN"):
        # CI secret stores keep one line better than many: accept the PEM base64-encoded.
        with contextlib.suppress(binascii.Error, ValueError):
            data = base64.b64decode(data, validate=True)
    try:
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except TypeError:  # encrypted
            if secrets is None:
                raise UsageError(f"the key in ${var} is encrypted: pass --passphrase-env VAR") from None
            private = serialization.load_pem_private_key(data, secrets("passphrase").encode())
    except ValueError:
        raise UsageError(f"${var} does not hold a PEM private key (PKCS#8), or the passphrase "
                         "is wrong") from None
    if not isinstance(private, (Ed25519PrivateKey, EllipticCurvePrivateKey)):
        raise UsageError(f"the key in ${var} is neither Ed25519 nor ECDSA")
    return private


class EnvVarSigner(Signer):
    """``envvar:VAR``: a PEM (PKCS#8) private key held in an environment variable.

    For CI, whose secret store hands the job an environment variable: the
    key is never written to a file. It may be base64-encoded on one line,
    and encrypted (its passphrase comes through the secrets handler).
    """

    SCHEME = "envvar"

    def __init__(self, inner: CryptoSigner) -> None:
        self._inner = inner

    @property
    def public_key(self) -> Key:
        return self._inner.public_key

    def sign(self, payload: bytes) -> Signature:
        return self._inner.sign(payload)

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: SecretsHandler | None = None
    ) -> EnvVarSigner:
        if not isinstance(public_key, SSlibKey):
            raise ValueError(f"expected SSlibKey for {priv_key_uri}")
        var = priv_key_uri.partition(":")[2]
        return cls(CryptoSigner(_env_private_key(var, secrets_handler), public_key))


SIGNER_FOR_URI_SCHEME[EnvVarSigner.SCHEME] = EnvVarSigner


def import_public(uri: str, secrets: Secrets) -> Key:
    """The public key of the private key ``uri`` names, asked of the token or KMS holding it."""
    if not is_key_uri(uri):
        raise UsageError(f"{uri!r} is not a private-key URI ({', '.join(URI_SCHEMES)}:…)")
    scheme, _, rest = uri.partition(":")
    with _service_errors(uri):
        if scheme == "envvar":
            return SSlibKey.from_crypto(_env_private_key(rest, secrets).public_key())
        if scheme == "hsm":
            from securesystemslib.signer import HSMSigner

            parsed = parse.urlparse(uri)
            keyid = int(parsed.path) if parsed.path else HSMSigner.SCHEME_KEYID
            label = dict(parse.parse_qsl(parsed.query)).get("label")
            return HSMSigner.import_(keyid, label, secrets)[1]
        if scheme == "awskms":
            from securesystemslib.signer import AWSSigner

            return AWSSigner.import_(rest)[1]
        if scheme == "gcpkms":
            from securesystemslib.signer import GCPSigner

            return GCPSigner.import_(rest)[1]
        from securesystemslib.signer import AzureSigner

        parsed = parse.urlparse(uri.replace("azurekms:", "https:", 1))
        parts = parsed.path.strip("/").split("/")
        if not parsed.hostname or len(parts) < 2 or parts[0] != "keys":
            raise UsageError(f"{uri}: expected azurekms://VAULT.vault.azure.net/keys/KEY/VERSION")
        return AzureSigner.import_(parsed.hostname.split(".")[0], parts[1])[1]


def _from_uri(uri: str, key: Key, secrets: Secrets) -> Signer:
    with _service_errors(uri):
        return Signer.from_priv_key_uri(uri, key, secrets)


def open_signer(
    spec: str,
    secrets: Secrets,
    *,
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Signer:
    """A signer for a ``--key``: a URI, a ``.pub`` recording one, or a private key file."""
    if is_key_uri(spec):
        return _from_uri(spec, import_public(spec, secrets), secrets)
    path = Path(spec)
    if path.suffix == ".pub":
        key, uri = load_public_record(path)
        if uri is None:
            raise UsageError(f"{path} is a public key with no signer recorded: give its private "
                             "key file, or record a hardware or KMS key with 'airlock keys "
                             "import-public'")
        return _from_uri(uri, key, secrets)
    return load_signer(path, secrets.passphrase, strict=strict, warn=warn)


def open_public_key(spec: str, secrets: Secrets) -> Key:
    """A public key for ``keys init``: a ``.pub`` file, or a URI asked for its public key."""
    if is_key_uri(spec):
        return import_public(spec, secrets)
    return load_public_key(Path(spec))


def key_files(specs: list[str]) -> list[Path]:
    """The files among ``--key`` values (a mistyped ``-o`` must spare them)."""
    return [Path(s) for s in specs if not is_key_uri(s)]


def sign_checked(signer: Signer, payload: bytes) -> Signature:
    """Sign ``payload`` and check the signature against the signer's public key.

    A ``.pub`` recorded for another token's key would otherwise yield a
    signature that counts for nothing, found only at the device.
    """
    with _service_errors(f"{getattr(signer, 'SCHEME', 'file')} key "
                         f"{signer.public_key.keyid[:16]}…"):
        sig = signer.sign(payload)
    try:
        signer.public_key.verify_signature(sig, payload)
    except (UnverifiedSignatureError, VerificationError):
        raise UsageError(f"the signature made for key {signer.public_key.keyid[:16]}… does not "
                         "verify with that key: its .pub file belongs to another key") from None
    return sig
