"""What of a release this device needs, decided before anything changes: the blobs a delta
expects it to hold, and the one variant of each model its facts pick.

Both are refusals (exit 3, journaled) raised from ``agent.install`` right after the
signed head is verified::

    release = pick_variants(layout, journal, verified.release, label)
    check_references(release, store, have=3, picked=True)   # a delta against sequence 3
    check_variant_blobs(journal, store, release, label)      # a bundle for other classes
"""

from __future__ import annotations

import json

from agent.journal import Journal
from agent.layout import Layout
from agent.store import ContentStore
from airlock.errors import FormatError, RejectedError
from airlock.format.oci import blob_path
from keys.release import Release

__all__ = ["check_references", "check_variant_blobs", "pick_variants", "stored_size"]


def check_references(release: Release, store: ContentStore, have: int | None,
                      picked: bool = False) -> None:
    """Every blob a delta expects must be on the device, with its signed length.

    That every blob a model or image names is listed (carried or expected) is
    the release's own rule (``Release._check_references``, at parse); here a
    delta bundle is refused before anything is read when one blob it expects
    is missing from the store or has another length than the signed one. The
    refusal names the base the delta was built against and what this device
    has (``have``, its sequence of the release's name), so the operator knows
    which full bundle to carry.
    """
    if release.delta:
        # Before the variants are picked, a blob only variants need is not asked for yet:
        # a device needs it only if its variant does (checked again once picked).
        skip = release.unused if picked else release.variant_only()
        missing = [d for d in release.delta.expects if d not in skip
                   and stored_size(store, release.stored_digest(d))
                   != release.files[blob_path(d)].length]
        if missing:
            named = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more"
                                              if len(missing) > 3 else "")
            base = release.delta.base_sequence
            here = (f"this device has no release of {release.name}" if have is None
                    else f"this device has accepted up to sequence {have}")
            raise RejectedError(
                f"this is a delta of {release.name} sequence {release.sequence} built against "
                f"base sequence {base}; {here} and lacks {len(missing)} of the blob(s) the "
                f"delta expects: {named}; carry the full bundle of sequence "
                f"{release.sequence}, or a delta built against this device's inventory"
            )


def stored_size(store: ContentStore, digest: str) -> int | None:
    try:
        return store.path(digest).stat().st_size
    except OSError:
        return None


def pick_variants(layout: Layout, journal: Journal, release: Release, label: str) -> Release:
    """The release as this device runs it: for each model with variants, the first whose
    ``when`` its facts (probed again now, ``agent.facts``) match; none is exit 3, journaled."""
    if not release.has_variants():
        return release
    from agent.facts import effective, refresh

    recorded = layout.release_dir(release.id) / "variants.json"
    if recorded.is_file():  # the same release again: it keeps the variants it was given
        try:
            return release.with_variants(json.loads(recorded.read_bytes()))
        except (OSError, ValueError, FormatError):
            pass  # damaged: picked afresh, as at its first install

    try:
        return release.pick_variants(effective(refresh(layout)))
    except RejectedError as e:
        journal.append("rejected", release=release.id, bundle=label, reason=str(e),
                       error=type(e).__name__)
        raise


def check_variant_blobs(journal: Journal, store: ContentStore, release: Release,
                         label: str) -> None:
    """A bundle built for other devices (``build --for-class``, a delta for a site) may leave
    out variants: refused (exit 3) before anything changes when it left out one this device
    picked and the device does not hold it already."""
    missing = release.missing_variant_blobs(
        lambda d: stored_size(store, release.stored_digest(d))
        == release.files[blob_path(d)].length)
    if not missing:
        return
    picked = sorted(f"{m.name} runs {m.variant}" for m in release.models
                    if set(m.blob_digests()) & set(missing))
    e = RejectedError(
        f"this bundle of {release.id} leaves out the variant this device picks "
        f"({', '.join(picked)}): {len(missing)} blob(s) it needs are neither in the bundle nor "
        "on the device; carry the full bundle, or one built for this device's class "
        "('airlock build --for-class' or '--delta-from' its inventory); nothing was changed")
    journal.append("rejected", release=release.id, bundle=label, reason=str(e),
                   error=type(e).__name__)
    raise e
