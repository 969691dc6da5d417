"""Verify a whole bundle on the host, as a device would before installing it.

::

    trust = TrustRoot.from_bytes(Path("root.json").read_bytes())
    with open("vision-1.2.0.airlock", "rb") as f:
        verified = verify_bundle(f, trust, ring="canary", progress=bar.update)
    print(verified.release.name, verified.role)

A flags bundle (``airlock flags set``) is checked as a device would apply it
(``bundler.examine.flag_bundles``): what comes back is then its description.

The signed metadata at the front is checked first (``keys.trust`` decides:
signatures, threshold, expiry, ring, a carried root's rotation), then every
file streams once through the bundle reader's one loop, which hashes it
against the signed list (several blobs at once when the bundle is a file)
and checks what the OCI layout references. A release whose signed
``supply_chain`` records upstream cosign signatures has them checked again,
offline, against the keys and policy it records (``bundler.examine.evidence``):
a failure is exit 3 naming the reference. A split
bundle's parts (``airlock.format.parts.PartsReader``) stream the same way, and an
error caused by a corrupt part names that part. Nothing is written; memory
stays flat whatever the bundle size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

from airlock.errors import RejectedError, UpstreamSignatureError
from airlock.format.bundle import BundleReader
from airlock.format.parts import explain
from bundler.examine.evidence import keep_evidence, recheck, wanted_paths
from keys.trust import TrustRoot, VerifiedRelease

__all__ = ["verify_bundle"]


def verify_bundle(
    stream: IO[bytes],
    trust: TrustRoot,
    *,
    ring: str | None = None,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifiedRelease | dict[str, Any]:
    """Check a whole bundle: metadata first, then every listed file's length and sha256.

    ``ring``: check it as a device in that ring would; ``None`` checks it for
    the rings the release names (a ring signer's limits still apply). A flags
    bundle's description (``flags_info``) comes back instead of a release.
    """
    from bundler.examine.flag_bundles import flags_info, is_flags_head, read_flags_bundle

    try:
        reader = BundleReader(stream)
        head = reader.head()
        if is_flags_head(head):
            return flags_info(read_flags_bundle(reader), trust=trust, ring=ring, now=now)
        _, verified = trust.verify_head(head.release_json, head.root_json, ring=ring,
                                        any_ring=ring is None, now=now)
        release = verified.release
        expects = release.not_carried()
        # Blobs of a bundle file are hashed on both cores; the loop ends once all matched.
        wanted, kept = wanted_paths(release), dict[str, bytes]()
        with contextlib.closing(reader.files(release.files, expects)) as members:
            for member in members:
                if member.path in wanted:
                    keep_evidence(member, kept, wanted)
                else:
                    member.verify(progress)
    except RejectedError as e:
        raise explain(stream, e) from None
    # The carried upstream signatures, checked again offline against the signed policy.
    problems = recheck(release, kept)
    if problems:
        raise UpstreamSignatureError("; ".join(problems))
    return verified
