"""The supply-chain section of a release: upstream policy, carried evidence, SBOM, provenance.

Signed in the release metadata under ``airlock.supply_chain`` (absent when a
spec asks for none of it, so other releases keep their bytes)::

    sc = SupplyChain(require_signatures=True,
                     keys={"sha256:9c…": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE…"},
                     verified=[Verified("reg/app:1.4", "sha256:4f…", "sha256:9c…")],
                     evidence=[Carried("signature", "sha256:4f…", "reg/app:1.4", "sha256:77…",
                                       tag="sha256-4f….sig", verified_with="sha256:9c…")])
    body = sc.to_json()
    again = supply_chain_from(Reader(body, "airlock.supply_chain"))

``enforce_on_device`` makes a device check the carried signatures again at
install (the release then ``requires`` the feature ``upstream_signatures``).
``keys`` holds each upstream public key (base64 of its DER
SubjectPublicKeyInfo, by key id) so ``airlock verify`` can check the carried
signatures again offline; ``verified`` says which reference resolved to which
digest and which key vouched for it; ``evidence`` lists every manifest in the
layout that refers to carried content (upstream signatures, attestations,
referrers) or to the release (the SBOM, ``kind: "sbom"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airlock.errors import FormatError
from keys.release_reader import Reader

__all__ = ["EVIDENCE_KINDS", "Carried", "SupplyChain", "Verified", "supply_chain_from"]

EVIDENCE_KINDS = ("signature", "attestation", "referrer", "sbom", "provenance")


@dataclass(frozen=True)
class Verified:
    """``ref`` resolved to ``digest``, and the upstream key ``key`` signed that digest."""

    ref: str
    digest: str
    key: str


@dataclass(frozen=True)
class Carried:
    """A manifest in the layout that refers to ``subject`` (a digest; "" for the release)."""

    kind: str
    subject: str
    ref: str
    manifest: str
    media_type: str = "application/vnd.oci.image.manifest.v1+json"
    artifact_type: str | None = None
    tag: str | None = None
    verified_with: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"kind": self.kind, "subject": self.subject, "ref": self.ref,
             "manifest": self.manifest, "media_type": self.media_type,
             "artifact_type": self.artifact_type, "tag": self.tag,
             "verified_with": self.verified_with}
        return {k: v for k, v in d.items() if v is not None}


@dataclass
class SupplyChain:
    require_signatures: bool = False
    keys: dict[str, str] = field(default_factory=dict)
    verified: list[Verified] = field(default_factory=list)
    evidence: list[Carried] = field(default_factory=list)
    enforce_on_device: bool = False  # the device re-checks the signatures at install

    def to_json(self) -> dict[str, Any]:
        enforce = {"enforce_on_device": True} if self.enforce_on_device else {}
        return {**enforce,
            "require_signatures": self.require_signatures,
            "keys": dict(sorted(self.keys.items())),
            "verified": [{"ref": v.ref, "digest": v.digest, "key": v.key} for v in self.verified],
            "evidence": [e.to_json() for e in self.evidence],
        }

    def digests(self) -> list[str]:
        """Every manifest the section names (each must be in the bundle)."""
        return [e.manifest for e in self.evidence]

    def of_kind(self, kind: str) -> list[Carried]:
        return [e for e in self.evidence if e.kind == kind]


def supply_chain_from(r: Reader) -> SupplyChain:
    """The section from untrusted JSON, strictly: a wrong field is a FormatError naming it."""
    require, enforce = r.value("require_signatures", False), r.value("enforce_on_device", False)
    if not isinstance(require, bool) or not isinstance(enforce, bool):
        raise FormatError(f"release field '{r.where}.require_signatures' and "
                          "'enforce_on_device' must be true or false")
    keys = r.mapping("keys")
    for kid, der in keys.items():
        if not kid.startswith("sha256:") or not isinstance(der, str):
            raise FormatError(f"release field '{r.where}.keys' must map key ids to keys")
        r.check("keys", _one_line, der)
    verified = [Verified(v.text("ref"), v.digest("digest"), v.digest("key"))
                for v in r.subs("verified")]
    evidence = []
    for e in r.subs("evidence"):
        kind = e.text("kind")
        if kind not in EVIDENCE_KINDS:
            raise FormatError(f"release field '{e.where}.kind' must be one of "
                              f"{', '.join(EVIDENCE_KINDS)}")
        subject = e.value("subject", "")
        if subject:
            e.digest("subject")
        evidence.append(Carried(kind, subject, e.text("ref"), e.digest("manifest"),
                                e.text("media_type"), e.opt_text("artifact_type"),
                                e.opt_text("tag"), e.digest("verified_with", optional=True)))
    for v in verified:
        if v.key not in keys:
            raise FormatError(f"release field '{r.where}.verified' names key {v.key[:19]}… "
                              "that its 'keys' do not hold")
    return SupplyChain(require, keys, verified, evidence, enforce)


def _one_line(value: str) -> str:
    from keys.signed_fields import valid_line

    return valid_line(value)
