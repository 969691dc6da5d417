"""The spec's upstream policy applied at pull: who must have signed what, and nothing moved.

``bundler.build.pull`` asks this for every registry image and model, with the
digest its reference resolved to, before fetching a single blob::

    found = check_upstream(client, ref, top.digest, image.verify, spec.require_signatures)
    ...                                     # pull by that digest
    check_unmoved(client, ref, top.digest)  # the tag still names what was verified

``policy: {require_signatures: true}`` makes an entry without ``verify:``
exit 3 (so does a local model file, which carries no upstream signature);
``verify: {key: FILE}`` makes a missing or refused cosign signature exit 3
(``bundler.build.cosign`` says why). A tag that names another digest once the
pull is done (re-pushed mid-build) is exit 3 too: the bundle would carry
content the registry no longer serves under that name.
"""

from __future__ import annotations

import base64

from airlock.errors import UpstreamSignatureError
from airlock.registry import Ref, RegistryClient
from bundler.build.cosign import Verified, load_public_key, verify_upstream
from bundler.build.spec import Spec, VerifySpec

__all__ = ["check_local_models", "check_unmoved", "check_upstream", "key_text"]


def check_upstream(client: RegistryClient, ref: Ref, digest: str, verify: VerifySpec | None,
                   required: bool) -> Verified | None:
    """The signatures that vouch for ``digest``, or None when the spec asks for none."""
    if verify is None:
        if required:
            raise UpstreamSignatureError(
                f"{ref}: policy.require_signatures is true but the spec gives it no "
                "'verify: {key: …}'; nothing was written")
        return None
    return verify_upstream(client, ref, digest, verify.key_pem)


def check_local_models(spec: Spec) -> None:
    """Under ``require_signatures`` a model must come from a registry, where it is signed."""
    if spec.require_signatures:
        for m in spec.models:
            if m.path is not None:
                raise UpstreamSignatureError(
                    f"model '{m.name}' ({m.path.name}): policy.require_signatures is true but "
                    "a local model file carries no upstream signature; push it to a registry, "
                    "sign it with cosign and give 'ref:' and 'verify:'; nothing was written")


def check_unmoved(client: RegistryClient, ref: Ref, digest: str) -> None:
    """Exit 3 when ``ref``'s tag names another digest now than when it was verified."""
    now = client.get_manifest(ref).digest
    if now != digest:
        raise UpstreamSignatureError(
            f"{ref}: the tag moved during the build: it named {digest} when its signature was "
            f"verified and names {now} now; nothing was written (build again, or pin the "
            "digest: REF@sha256:…)")


def key_text(pem: bytes) -> str:
    """A public key as one line for the signed metadata: base64 of its DER SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    der = load_public_key(pem).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()
