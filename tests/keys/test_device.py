"""Device documents (inventories, reports): signed by the device key, refused when altered."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from airlock.errors import FormatError, SignatureError
from keys.device import INVENTORY_TYPE, REPORT_TYPE, sign_document, verify_document
from keys.keyfile import generate_keypair, load_public_key, load_signer


@pytest.fixture()
def device(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair("device", tmp_path)


def test_round_trip_against_own_and_enrolled_key(device: tuple[Path, Path]) -> None:
    priv, pub = device
    data = sign_document({"device_id": "cam-7", "blobs": []}, INVENTORY_TYPE, load_signer(priv))
    assert verify_document(data, INVENTORY_TYPE).body["device_id"] == "cam-7"
    doc = verify_document(data, INVENTORY_TYPE, key=load_public_key(pub))
    assert doc.keyid == load_public_key(pub).keyid


def test_altered_payload_is_refused(device: tuple[Path, Path]) -> None:
    data = sign_document({"device_id": "cam-7"}, INVENTORY_TYPE, load_signer(device[0]))
    raw = json.loads(data)
    raw["payload"] = base64.b64encode(b'{"device_id":"cam-8"}').decode()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_document(json.dumps(raw).encode(), INVENTORY_TYPE)


def test_another_devices_key_is_refused(device: tuple[Path, Path], tmp_path: Path) -> None:
    _, other_pub = generate_keypair("other", tmp_path / "o")
    data = sign_document({"device_id": "cam-7"}, INVENTORY_TYPE, load_signer(device[0]))
    with pytest.raises(SignatureError, match="not the enrolled"):
        verify_document(data, INVENTORY_TYPE, key=load_public_key(other_pub))


def test_swapped_embedded_key_is_refused(device: tuple[Path, Path], tmp_path: Path) -> None:
    _, other_pub = generate_keypair("other", tmp_path / "o")
    data = sign_document({"device_id": "cam-7"}, INVENTORY_TYPE, load_signer(device[0]))
    raw = json.loads(data)
    raw["publicKey"] = json.loads(other_pub.read_text())
    with pytest.raises(SignatureError):
        verify_document(json.dumps(raw).encode(), INVENTORY_TYPE)


@pytest.mark.parametrize("data", [b"", b"[]", b"{", b'{"payload": 1}', b"\xff" * 10])
def test_garbage_is_a_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        verify_document(data, INVENTORY_TYPE)


def test_a_report_is_not_an_inventory(device: tuple[Path, Path]) -> None:
    data = sign_document({"device_id": "cam-7"}, REPORT_TYPE, load_signer(device[0]))
    with pytest.raises(FormatError, match="payload type"):
        verify_document(data, INVENTORY_TYPE)
