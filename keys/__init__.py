"""Airlock trust: key files, the trust root, every trust decision, the signed documents.

Trust decides; callers do the I/O (python-tuf's ``trusted_metadata_set``
split). Nothing here opens a bundle: it is handed the bytes a reader took
from one (``airlock.format.bundle``) and answers with a verdict or a
:class:`~airlock.errors.RejectedError`:

* ``keyfile``     Ed25519 key files (0600, optionally passphrase-encrypted)
* ``signers``     a signer from a key file, a recorded ``.pub`` or a URI (``hsm:``, ``envvar:``, KMS)
* ``signatures``  signatures collected one at a time: add, detach, merge, count a root's
* ``identify``    what a file handed in actually is, in words a user recognises
* ``trust``       the TUF root, rotation, thresholds, ring signers, expiry, anti-rollback
* ``metadata``    the envelope of every signed document: bounded parse, signed form, ``Kind``
* ``release``     the signed release metadata (a TUF ``targets`` document)
* ``release_entries``  its parts: models, images, hooks, a delta's base, agent kits
* ``release_reader``   the strict reader of those parts from untrusted JSON
* ``supply_chain``  the release's upstream policy and the evidence it carries (signed)
* ``upstream_signatures``  cosign key-based signatures checked (build, ``airlock verify``, install)
* ``features``    the features a release may ``require``, and the ones this agent knows
* ``variants``    a model's variants: the signed ``when`` selectors and which one a device picks
* ``flags``       a signed feature-flags set and the stable percentage buckets
* ``purpose_signers``    signers the root names for a purpose other than releases (time, director)
* ``timetoken``   signed time tokens for devices without a trusted clock
* ``visit``       directed visits: which device takes which release, signed by a director
* ``signed_time``  how signed documents write a time (``format_time``, ``parse_time``)
* ``signed_fields``      what each release field may hold; the bundler checks specs by the same rules
* ``evaluation_fields``  the same for evaluation thresholds, input contracts, providers, sessions
* ``shadow_fields``      the same for a model's shadow check and its samples policy
* ``device``      documents a device signs with its own key: inventories, reports, sample packs
* ``encryption_keys``  a device's EC P-256 encryption key, and the recipients a release names
* ``kit``         an agent kit's signed ``kit.json``, made and checked with python-tuf
* ``kitverify``   the same check with the standard library alone, shipped in every kit

Example::

    from keys.trust import TrustRoot

    root = TrustRoot.from_bytes(Path("root.json").read_bytes())
    head = BundleReader(stream).head()
    new_root, verified = root.verify_head(head.release_json, head.root_json, ring="canary")
    print(verified.release.name, verified.role)
"""
