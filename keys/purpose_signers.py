"""Signers the trust root names for one purpose (time tokens), not for releases.

python-tuf's root knows only its four top-level roles, and the ``timestamp``
role holds the release keys. A signer for another purpose is named the way
the root names ring-limited release signers: TUF ``Delegations`` (keys and a
threshold per signer, so rotation and thresholds work as for every role),
kept under their own field ``x-airlock-signers`` with a ``purpose`` each, so
that no key named here can ever count toward a release::

    root = create_root(..., purpose_signers=[PurposeSigner("clock", (key,), "time")])
    tally = purpose_tally(root_md.signed, "time", payload, signatures)
    tally.complete          # a threshold of one "time" signer's keys signed

The purposes there are: ``time`` (``keys.timetoken``) and ``director``
(``keys.visit``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from securesystemslib.signer import Key, Signature
from tuf.api.metadata import DelegatedRole, Delegations, Root, Targets

from airlock.errors import FormatError, UsageError

__all__ = ["PURPOSES", "PurposeSigner", "PurposeTally", "describe", "named", "purpose_signers",
           "purpose_tally", "set_purpose_signers"]

FIELD = "x-airlock-signers"
#: Purpose -> what its signers sign.
PURPOSES = {"time": "time tokens: the current time, for devices without a trusted clock",
            "director": "directed visits: which device takes which release, stays or rolls back"}


@dataclass(frozen=True)
class PurposeSigner:
    name: str
    keys: tuple[Key, ...]
    purpose: str
    threshold: int = 1


@dataclass(frozen=True)
class PurposeTally:
    signer: str | None  # the signer whose threshold was met, or came closest
    valid: int
    threshold: int

    @property
    def complete(self) -> bool:
        return self.signer is not None and self.valid >= self.threshold


def set_purpose_signers(root: Root, signers: Sequence[PurposeSigner]) -> None:
    """Name ``signers`` in ``root`` (none: the field goes)."""
    if not signers:
        root.unrecognized_fields.pop(FIELD, None)
        return
    keys: dict[str, Key] = {}
    roles: dict[str, DelegatedRole] = {}
    for s in signers:
        if s.purpose not in PURPOSES:
            raise UsageError(f"signer {s.name!r}: purpose {s.purpose!r} is not one of "
                             f"{', '.join(PURPOSES)}")
        unique = {k.keyid: k for k in s.keys}
        if not s.name or s.name in roles or not 1 <= s.threshold <= len(unique):
            raise UsageError(f"{s.purpose} signer {s.name!r} needs a new name and a threshold "
                             f"between 1 and its {len(unique)} distinct key(s)")
        keys.update(unique)
        roles[s.name] = DelegatedRole(s.name, list(unique), s.threshold, terminating=True,
                                      paths=["*"], unrecognized_fields={"purpose": s.purpose})
    root.unrecognized_fields[FIELD] = Delegations(keys, roles).to_dict()


def _delegator(root: Root) -> Targets:
    raw = root.unrecognized_fields.get(FIELD)
    if raw is None:
        return Targets(delegations=None)
    try:
        assert isinstance(raw, dict)
        delegations = Delegations.from_dict(copy.deepcopy(raw))
    except (AssertionError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise FormatError(f"trust root has malformed {FIELD}: {e}") from None
    for name, role in (delegations.roles or {}).items():
        if role.unrecognized_fields.get("purpose") not in PURPOSES:
            raise FormatError(f"trust root has malformed {FIELD}: '{name}' needs a purpose, "
                              f"one of {', '.join(PURPOSES)}")
    return Targets(delegations=delegations)


def purpose_signers(root: Root) -> dict[str, str]:
    """Signer name -> purpose; validates the field (a malformed one is a FormatError)."""
    d = _delegator(root).delegations
    return {name: str(role.unrecognized_fields["purpose"])
            for name, role in ((d.roles or {}) if d else {}).items()}


def purpose_tally(root: Root, purpose: str, payload: bytes,
                  signatures: Mapping[str, Signature]) -> PurposeTally:
    """Whether one signer of ``purpose`` reached its threshold over ``payload``."""
    delegator = _delegator(root)
    best = PurposeTally(None, 0, 1)
    for name, p in purpose_signers(root).items():
        if p != purpose:
            continue
        result = delegator.get_verification_result(name, payload, dict(signatures))
        found = PurposeTally(name, len(result.signed),
                             delegator.get_delegated_role(name).threshold)
        if result.verified:
            return found
        if best.signer is None or found.valid > best.valid:
            best = found
    return best


def named(root: Root) -> list[PurposeSigner]:
    """The signers ``root`` names, as :func:`set_purpose_signers` takes them (a rotation keeps
    the ones of a purpose it does not replace)."""
    d = _delegator(root).delegations
    if d is None:
        return []
    return [PurposeSigner(name, tuple(d.keys[k] for k in role.keyids),
                          str(role.unrecognized_fields["purpose"]), role.threshold)
            for name, role in (d.roles or {}).items()]


def describe(root: Root) -> list[dict[str, Any]]:
    """The signers, for people: name, purpose, threshold, key ids."""
    d = _delegator(root).delegations
    return [{"name": n, "purpose": r.unrecognized_fields["purpose"], "threshold": r.threshold,
             "keys": list(r.keyids)} for n, r in ((d.roles or {}) if d else {}).items()]
