"""An encrypted release opened with this device's key: unwrapped before any blob is read.

The device's EC P-256 pair is made at ``init``; a device initialised before
encryption existed gets it on its first start (``ensure_key``, under the
lock). ``open_release`` unwraps every blob key of an encrypted release with
it, before the install reads a single blob, so a device that is not a
recipient refuses (exit 3, naming the recipients) with nothing changed::

    ensure_key(layout)
    openers = open_release(layout, release)   # {ciphertext digest: BlobOpener}
    stream = openers[digest].stream()         # decrypts while the store writes
"""

from __future__ import annotations

import contextlib

from agent.layout import Layout
from airlock.errors import RejectedError
from airlock.files import fsync_dir, write_atomic
from airlock.format.ocicrypt import BlobOpener, NotRecipientError, key_id
from keys.encryption_keys import generate_pair
from keys.release import Release

__all__ = ["ensure_key", "open_release", "public_key"]


def ensure_key(layout: Layout) -> bool:
    """Make the device's encryption key pair when it has none; True when it made one."""
    if layout.encryption_key.is_file() and layout.encryption_pub.is_file():
        return False
    private, public = generate_pair()
    with contextlib.suppress(FileNotFoundError):
        layout.encryption_pub.unlink()
    write_atomic(layout.encryption_key, private, mode=0o600)
    write_atomic(layout.encryption_pub, public)
    fsync_dir(layout.root)
    return True


def public_key(layout: Layout) -> str | None:
    """The public half, PEM text, for the signed inventory; None before the first start."""
    try:
        return layout.encryption_pub.read_text()
    except OSError:
        return None


def open_release(layout: Layout, release: Release) -> dict[str, BlobOpener]:
    """Every encrypted blob's key, unwrapped; exit 3 naming why when this device cannot."""
    enc = release.encryption
    if enc is None:
        return {}
    names = ", ".join(f"{n} ({k[:12]}…)" for n, k in enc.recipients)
    try:
        private = layout.encryption_key.read_bytes()
    except OSError:
        raise RejectedError(f"release {release.id} is encrypted to {names}, and this device "
                            "has no encryption key yet; nothing changed") from None
    mine = key_id(layout.encryption_pub.read_bytes())
    if mine not in {k for _, k in enc.recipients}:
        raise RejectedError(f"release {release.id} is encrypted to {names}, not to this "
                            f"device (its key {mine[:12]}…); nothing changed: ask for a bundle "
                            "built with --encrypt-to this device's inventory")
    openers: dict[str, BlobOpener] = {}
    for blob in enc.blobs:
        try:
            opener = BlobOpener.unwrap(blob.jwe, blob.hmac, private)
        except NotRecipientError as e:
            raise RejectedError(f"release {release.id}: blob {blob.digest[:23]}… cannot be "
                                f"opened with this device's key: {e}; nothing changed") from None
        if opener.plain_digest != blob.plain:
            raise RejectedError(f"release {release.id}: blob {blob.digest[:23]}…'s wrapped key "
                                "names another plaintext than the signed one; nothing changed")
        openers[blob.digest] = opener
    return openers
