"""The features a release may require, and the ones this agent knows.

A release carries a signed ``requires`` list: the names of the features it
depends on (a gate the device must apply, a layout it must read). An agent
refuses a release that requires a feature it does not know (exit 3, naming
it), so an older agent never installs a release while silently skipping a
gate it carries; the bundler refuses to sign a ``requires`` naming a
feature no agent knows::

    check_requires(["delta"])          # ("delta",)
    check_requires(["variants"])       # ("variants",)
    check_requires(["chunks"])         # RejectedError: requires feature 'chunks' ...

``KNOWN_FEATURES`` names the optional parts of a release that exist today,
each of which every agent that reads ``requires`` implements. A feature
added later (shadow checks, encryption, a chunk index ...) adds
its name here in the same change that teaches the agent to apply it, and
the bundler then writes it into the releases that use it. Until then the
bundler writes an empty list.
"""

from __future__ import annotations

from collections.abc import Iterable

from airlock.errors import RejectedError

__all__ = ["KNOWN_FEATURES", "UnknownFeatureError", "check_requires"]

#: Feature name -> what it is. Every agent that reads ``requires`` knows these.
KNOWN_FEATURES: dict[str, str] = {
    "delta": "a delta bundle: blobs left out that the device must already hold",
    "evaluate": "a labelled evaluation set with metric thresholds, checked on the device",
    "inputs_contract": "an input contract (dtypes, shapes, ranges) checked on the device",
    "agent_kits": "agent kits: the release updates the agent after it installs",
    "upstream_signatures": "carried upstream cosign signatures the device checks at install",
    "encryption": "blobs encrypted to named recipients (ocicrypt's scheme), decrypted on install",
    "shadow": "a shadow check: the model is compared with the running one on device samples",
    "variants": "model variants: the device picks one per model by its facts (keys.variants)",
}


class UnknownFeatureError(RejectedError):
    """A release requires a feature this agent (or bundler) does not know. Exit code 3."""

    def __init__(self, feature: str) -> None:
        super().__init__(
            f"the release requires feature '{feature[:64]}', which this version of Airlock "
            f"does not know (it knows: {', '.join(sorted(KNOWN_FEATURES)) or 'none'}); "
            "update airlock-agent before installing the release"
        )
        self.feature = feature


def check_requires(features: Iterable[str]) -> tuple[str, ...]:
    """``features`` in signed order, when each is one this agent knows; else exit 3 naming it."""
    names = tuple(features)
    for name in names:
        if name not in KNOWN_FEATURES:
            raise UnknownFeatureError(name)
    return names
