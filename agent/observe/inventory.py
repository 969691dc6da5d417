"""What this device holds, signed with its own key: the basis of delta bundles.

The host builds a delta bundle that leaves out every blob the device proves
it holds; the proof is this inventory, signed with the device key made at
``init`` (a DSSE envelope, see ``keys.device``)::

    body = inventory(layout)        # device id, ring, facts, releases, sequences, blobs
    data = signed_inventory(layout) # bytes to carry home on the stick
    write_inventory(layout, Path("/media/usb/cam-7.inventory.json"))  # the same, as a file
    # on the host: keys.device.verify_document(data, INVENTORY_TYPE, key=enrolled)

It reads the store and the release directories only; it changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.decrypt import public_key
from agent.facts import load_facts
from agent.install import load_sequences
from agent.layout import Layout
from agent.self.identity import identity
from agent.store import ContentStore
from agent.switch import read_link
from airlock.errors import AirlockError
from airlock.files import write_atomic
from keys.device import INVENTORY_TYPE, sign_document
from keys.keyfile import load_signer

__all__ = ["inventory", "signed_inventory", "write_inventory"]


def inventory(layout: Layout) -> dict[str, Any]:
    """The unsigned inventory document of the device at ``layout``."""
    config = layout.load_config()
    store = ContentStore(layout)
    releases: list[dict[str, Any]] = []
    for rid in layout.release_ids():
        try:
            r = layout.load_release(rid)
        except (AirlockError, OSError) as e:  # a damaged release dir is reported, not fatal
            releases.append({"id": rid, "error": str(e)[:200]})
            continue
        # Models, images, flags and budgets too: `airlock diff INVENTORY BUNDLE` compares them.
        releases.append({"id": rid, **r.summary()})
    blobs: list[dict[str, Any]] = []
    for digest in store.digests():
        try:
            blobs.append({"digest": digest, "size": store.path(digest).stat().st_size})
        except OSError:
            continue
    return {
        "kind": "inventory",
        "device_id": config.device_id,
        "ring": config.ring,
        "agent": identity(),  # version, platform, Python, kit: which kit this site needs
        "facts": load_facts(layout),  # its class: what the host picks variants by
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "active": read_link(layout, "current"),
        "previous": read_link(layout, "previous"),
        "releases": releases,
        "sequences": load_sequences(layout),
        "blobs": blobs,
        # What `airlock build --encrypt-to INVENTORY` encrypts to (None before its first start).
        "encryption_key": public_key(layout),
    }


def signed_inventory(layout: Layout) -> bytes:
    """The inventory as a DSSE envelope signed with the device key."""
    return sign_document(inventory(layout), INVENTORY_TYPE, load_signer(layout.device_key))


def write_inventory(layout: Layout, output: Path) -> tuple[bytes, dict[str, Any]]:
    """Sign the inventory and write it to ``output`` atomically; returns the bytes and the body.

    ``output`` is on the stick, outside ROOT: the one file the agent writes
    there, because a person asked for it.
    """
    body = inventory(layout)
    data = sign_document(body, INVENTORY_TYPE, load_signer(layout.device_key))
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, data)
    return data, body
