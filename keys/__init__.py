"""Airlock trust: key files, the trust root, every trust decision, release metadata.

Trust decides; callers do the I/O (python-tuf's ``trusted_metadata_set``
split). Nothing here opens a bundle: it is handed the bytes a reader took
from one (``airlock.format.bundle``) and answers with a verdict or a
:class:`~airlock.errors.RejectedError`:

* ``keyfile``  Ed25519 key files (0600, optionally passphrase-encrypted)
* ``trust``    the TUF root, rotation, thresholds, ring signers, expiry, anti-rollback
* ``release``  the signed release metadata (a TUF ``targets`` document)
* ``signed_fields``  what each release field may hold; the bundler checks specs by the same rules
* ``signers``  a signer from a key file, a recorded ``.pub`` or a URI (``hsm:``, ``envvar:``, KMS)
* ``signatures``  signatures collected one at a time: add, detach, merge, count a root's

Example::

    from keys.trust import TrustRoot

    root = TrustRoot.from_bytes(Path("root.json").read_bytes())
    head = BundleReader(stream).head()
    new_root, verified = root.verify_head(head.release_json, head.root_json, ring="canary")
    print(verified.release.name, verified.role)
"""
