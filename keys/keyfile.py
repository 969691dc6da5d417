"""Ed25519 key files: generate, save, load.

A key pair is two files: ``NAME.key`` (PKCS#8 PEM, mode 0600, encrypted when a
passphrase is given) and ``NAME.pub`` (the TUF/securesystemslib JSON form of
the public key, with its key id)::

    priv, pub = generate_keypair("release", Path("keys"), passphrase=b"s3cret")
    signer = load_signer(priv, passphrase=b"s3cret", warn=print)
    key = load_public_key(pub)
    assert signer.public_key.keyid == key.keyid

A ``.pub`` file may also record where its private key lives when that is
not a file: ``airlock keys import-public`` writes the public half of an HSM
or KMS key with its private-key URI (``x-airlock-private-key-uri``), and
``--key keys/hsm-release.pub`` then signs through that URI
(``keys.signers``)::

    write_public_key(Path("keys/hsm-release.pub"), key, uri="hsm:2?label=airlock")
    key, uri = load_public_record(Path("keys/hsm-release.pub"))

Keys are hard to lose by accident: an empty passphrase is refused (``None``
is the explicit "unencrypted"; ``airlock keys generate`` asks for
``--no-passphrase`` to pass it), and a private key file that group or others
may read is reported through ``warn`` when it is loaded to sign, or refused
with ``strict=True`` (``--strict``), as ssh refuses such a key.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from airlock.errors import UsageError

__all__ = [
    "URI_FIELD",
    "generate_keypair",
    "key_from_document",
    "load_public_key",
    "load_public_record",
    "load_signer",
    "passphrase_from_env",
    "write_public_key",
]

#: The field of a ``.pub`` file naming its private key's URI (not part of the key).
URI_FIELD = "x-airlock-private-key-uri"


def passphrase_from_env(var: str | None) -> bytes | None:
    """The passphrase held in environment variable ``var`` (None when not asked for)."""
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None:
        raise UsageError(f"environment variable {var} is not set; export the key passphrase in it")
    if not value:
        # An empty passphrase encrypts nothing; an unset-but-exported variable looks like one.
        raise UsageError(f"environment variable {var} is empty; a key passphrase must not be "
                         "empty (for an unencrypted key say so: --no-passphrase)")
    return value.encode()


def generate_keypair(
    name: str, directory: Path, passphrase: bytes | None = None, *, force: bool = False
) -> tuple[Path, Path]:
    """Write ``directory/name.key`` (0600) and ``directory/name.pub``; return both paths.

    ``passphrase=None`` writes the key unencrypted; an empty passphrase is refused.
    """
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"key name {name!r} must be a plain file name")
    if passphrase is not None and not passphrase:
        raise UsageError("a key passphrase must not be empty; give one, or write the key "
                         "unencrypted on purpose (--no-passphrase)")
    directory.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    if not force and (priv_path.exists() or pub_path.exists()):
        raise UsageError(f"{priv_path} already exists; choose another name or remove it")
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase is not None
        else serialization.NoEncryption()
    )
    try:
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    except ValueError as e:  # e.g. a passphrase longer than 1023 bytes
        raise UsageError(f"cannot encrypt key {priv_path}: {e}") from None
    # Create with 0600 from the start so the key is never readable by others,
    # not even for an instant between write and chmod.
    if priv_path.exists():
        priv_path.unlink()
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    write_public_key(pub_path, SSlibKey.from_crypto(private.public_key()), force=True)
    return priv_path, pub_path


def _public_dict(key: Key) -> dict[str, object]:
    return {"keyid": key.keyid, **key.to_dict()}


def load_signer(
    path: Path,
    passphrase: bytes | None = None,
    *,
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
) -> CryptoSigner:
    """Load a private key file as a signer; clear errors for wrong or missing passphrases.

    A key file group or others may access is refused with ``strict``, else
    reported through ``warn``: anyone who can read it can sign (an encrypted
    one is open to an offline guess at its passphrase).
    """
    try:
        with path.open("rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            data = f.read()
    except OSError as e:
        raise UsageError(f"cannot read key {path}: {e.strerror}") from e
    if mode & 0o077:
        exposed = (f"private key {path} is open to group or others (mode {mode:04o}); "
                   f"run 'chmod 600 {path}'")
        if strict:
            raise UsageError(exposed + " (refused: --strict)")
        if warn is not None:
            warn(exposed)
    try:
        private = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as e:
        if passphrase is None:
            raise UsageError(f"key {path} is encrypted; pass --passphrase-env VAR") from e
        raise UsageError(f"key {path} is not encrypted; drop --passphrase-env") from e
    except ValueError as e:
        if b"ENCRYPTED" in data:
            raise UsageError(f"wrong passphrase for key {path}") from e
        raise UsageError(f"{path} is not a private key file (PEM PKCS#8)") from e
    if not isinstance(private, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 key; make keys with 'airlock keys generate'")
    return CryptoSigner(private)


def key_from_document(raw: object) -> Key:
    """A public key carried inside a document, its id computed from its key material.

    The document's own ``keyid`` is a claim: a signature relabelled with the
    release key's id (by an attacker's key whose material says otherwise)
    would otherwise replace the real one. A claim that is not the computed id
    is refused (ValueError); so is anything that is not a key.
    """
    from securesystemslib.signer._utils import compute_default_keyid

    if not isinstance(raw, dict):
        raise ValueError("the key is not an object")
    fields = dict(raw)
    claimed = fields.pop("keyid", None)
    key = Key.from_dict("-", dict(fields))
    computed = compute_default_keyid(key.keytype, key.scheme, key.keyval)
    if claimed is not None and claimed != computed:
        raise ValueError(f"its key id {str(claimed)[:16]}… is not the id of its key material "
                         f"({computed[:16]}…): relabelled")
    return Key.from_dict(computed, fields)


def load_public_key(path: Path) -> Key:
    """Load a ``.pub`` file written by :func:`generate_keypair` or :func:`write_public_key`."""
    return load_public_record(path)[0]


def load_public_record(path: Path) -> tuple[Key, str | None]:
    """A ``.pub`` file's key and the private-key URI it records (None for a key file's)."""
    if path.suffix == ".key":
        raise UsageError(f"{path} is a private key; give the matching .pub file")
    try:
        raw = json.loads(path.read_text())
        uri = raw.pop(URI_FIELD, None)
        keyid = raw.pop("keyid")
        if uri is not None and not isinstance(uri, str):
            raise TypeError(URI_FIELD)
        return Key.from_dict(keyid, raw), uri
    except OSError as e:
        raise UsageError(f"cannot read public key {path}: {e.strerror}") from e
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UsageError(f"{path} is not an Airlock public key file") from e


def write_public_key(path: Path, key: Key, uri: str | None = None, *, force: bool = False) -> None:
    """Write ``key`` as a ``.pub`` file, with the URI of its private key when it has one."""
    if not force and path.exists():
        raise UsageError(f"{path} already exists; choose another name or remove it")
    record = _public_dict(key)
    if uri is not None:
        record[URI_FIELD] = uri
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
