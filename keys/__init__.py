"""Airlock trust: keys, the trust root, signed release metadata and the bundle format.

Both sides of the air gap import this package and nothing else of each other:
the bundler writes bundles with :func:`keys.bundle_format.write_bundle`, the
agent reads them with :class:`keys.bundle_format.BundleReader`, and every
decision about signatures, thresholds, expiry, rollback and rings is made by
:class:`keys.trust.TrustRoot`.

    from keys.bundle_format import BundleReader
    from keys.trust import TrustRoot

    root = TrustRoot.from_file(Path("root.json"))
    with open("vision-1.2.0.airlock", "rb") as f:
        reader = BundleReader(f)
        root, verified = root.verify_head(reader.head())
        for member in reader.files(verified.release.files):
            member.verify()
"""
