"""Documents a device signs with its own key: inventories, reports and sample-pack manifests.

A device key is made at ``airlock-agent init`` (``ROOT/device.key``, its
public half ``device.pub``). What the device writes for the host is a DSSE
envelope (securesystemslib's ``dsse.Envelope``, the in-toto/Sigstore format)
whose payload is JSON and whose ``payloadType`` says what it is; the
device's public key travels beside the payload so a document can be checked
on its own, and against an enrolled key when the host has one::

    data = sign_document({"device_id": "cam-7", ...}, INVENTORY_TYPE, signer)
    doc = verify_document(data, INVENTORY_TYPE)             # signature against its own key
    doc = verify_document(data, INVENTORY_TYPE, key=pinned)  # and against an enrolled key
    doc.body["device_id"], doc.keyid

Trust decides here; callers read and write the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError as SslibFormatError
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import Key, Signer

from airlock.errors import FormatError, SignatureError
from airlock.limits import MAX_DEVICE_DOCUMENT_BYTES
from keys.identify import describe

__all__ = ["INVENTORY_TYPE", "REPORT_TYPE", "SAMPLES_TYPE", "DeviceDocument", "sign_document",
           "verify_document"]

INVENTORY_TYPE = "application/vnd.airlock.inventory.v1+json"
REPORT_TYPE = "application/vnd.airlock.report.v1+json"
SAMPLES_TYPE = "application/vnd.airlock.samples.v1+json"
_WHAT = {REPORT_TYPE: "report", INVENTORY_TYPE: "inventory", SAMPLES_TYPE: "sample-pack manifest"}


@dataclass(frozen=True)
class DeviceDocument:
    """A verified device document: what it says, and which key signed it."""

    body: dict[str, Any]
    payload_type: str
    keyid: str
    key: Key


def sign_document(body: dict[str, Any], payload_type: str, signer: Signer) -> bytes:
    """``body`` as a signed DSSE envelope, with the signer's public key beside it."""
    payload = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    envelope = Envelope(payload, payload_type, {})
    envelope.sign(signer)
    key = signer.public_key
    doc = {**envelope.to_dict(), "publicKey": {"keyid": key.keyid, **key.to_dict()}}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def verify_document(data: bytes, payload_type: str, key: Key | None = None) -> DeviceDocument:
    """Check a device document's signature; with ``key``, it must be that key's.

    Raises FormatError for anything that is not such a document and
    SignatureError for a signature that does not verify (a forged or altered
    document, or one signed by another device than ``key``'s).
    """
    what = _WHAT.get(payload_type, "document")
    if len(data) > MAX_DEVICE_DOCUMENT_BYTES:
        raise FormatError(f"{what} is larger than {MAX_DEVICE_DOCUMENT_BYTES} bytes")
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        envelope = Envelope.from_dict(raw)
        pub = dict(raw["publicKey"])
        embedded = Key.from_dict(str(pub.pop("keyid")), pub)
    except (ValueError, KeyError, TypeError, AttributeError, SslibFormatError, RecursionError) as e:
        # AttributeError: the DSSE reader calls str methods on whatever the JSON holds.
        raise FormatError(_not_a_document(data, what, e)) from None
    if envelope.payload_type != payload_type:
        raise FormatError(f"not an Airlock {what} (payload type {envelope.payload_type[:80]!r})")
    if key is not None and key.keyid != embedded.keyid:
        raise SignatureError(
            f"{what} is signed by key {embedded.keyid[:16]}…, not the enrolled {key.keyid[:16]}…"
        )
    try:
        envelope.verify([key or embedded], 1)
    except (VerificationError, ValueError, SslibFormatError):
        raise SignatureError(f"{what} signature does not verify (forged or altered)") from None
    try:
        body = json.loads(envelope.payload)
    except (ValueError, RecursionError):
        raise FormatError(f"{what} payload is not JSON") from None
    if not isinstance(body, dict):
        raise FormatError(f"{what} payload is not a JSON object")
    return DeviceDocument(body, payload_type, embedded.keyid, key or embedded)


def _not_a_document(data: bytes, what: str, error: BaseException) -> str:
    """Why ``data`` is no signed device document, in words: what the file is instead
    (a bundle, a key, binary data...), never a decoder's message."""
    kind = describe(data)
    if kind.startswith(("JSON", "damaged")):
        missing = f" (no {error.args[0]!r})" if isinstance(error, KeyError) and error.args else ""
        return f"not a signed Airlock {what}: JSON without a device's signed envelope{missing}"
    if kind.startswith(("a ", "an ")):
        return f"{kind}, not a signed Airlock {what}"
    return f"not a signed Airlock {what}: {kind}"
